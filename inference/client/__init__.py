"""The AI engine, as workers call it: OpenAI-protocol providers tried in order (the local model
server first, then OpenAI), failover, and a circuit breaker shared through Redis. Never imports
`inference.server`: the two meet only over HTTP."""
