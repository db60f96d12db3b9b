"""AI: `client/` (the engine the workers call: providers, failover, breaker) and `server/` (the
model server: local model, OpenAI-compatible app, batching, Ray Serve). Neither imports the
other."""
