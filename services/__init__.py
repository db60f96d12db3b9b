"""Domain logic shared by the API and the Temporal activities, per feature. All queries live in
the `repository` modules; `service` modules (`*_service.py` where a feature has several) hold
the rules; `schemas` the shapes clients see. `jobs/` is the lifecycle every kind of job shares."""
