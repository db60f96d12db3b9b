"""The service's shared vocabulary: what travels between the API, the workflows and the
activities (pydantic models, phases, platforms, languages), and the names both sides use
(workflows, activities, task queues, error codes), each defined once.

Imports neither the services, the database nor Temporal (`failures` alone imports
`temporalio.exceptions`, to turn a `JobError` into a Temporal failure and back), so the API's
response types stay free of Temporal and workflows can pass these modules through their
sandbox. `make lint` checks that with import-linter."""
