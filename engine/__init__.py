"""Kinema engine: graph execution. Knows nothing of HTTP or of any model."""
