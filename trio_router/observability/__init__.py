"""Metrics (and, later, structured logs and traces)."""
