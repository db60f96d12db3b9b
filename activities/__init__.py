"""Temporal activities: thin adapters from Temporal to the services."""
