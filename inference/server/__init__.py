"""The model server: the local model (transformers, GGUF), its OpenAI-compatible app with
batching, and the Ray Serve application (`hivesync inference`). Never imports
`inference.client`: the two meet only over HTTP."""
