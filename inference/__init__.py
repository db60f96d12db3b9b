"""The AI engine (providers with failover), the local model and its OpenAI-compatible server."""
