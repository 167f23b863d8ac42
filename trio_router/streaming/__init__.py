"""Streaming: server-sent events (encoding, and the producer/consumer that streams them)."""
