"""The agent's hot path, compiled: ring buffers and streaming feature extractors."""
