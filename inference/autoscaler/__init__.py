"""The GPU autoscaler (`hivesync autoscaler`): sensors read Temporal's queues (and GPU use),
a pure policy turns them into a replica count with a reason, an actuator writes it where
KubeRay reads it."""
