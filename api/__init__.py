"""The HTTP API. Routes are thin: validate, authorize, call a service."""
