"""Infrastructure shared by the API, the services and the Temporal workers."""
