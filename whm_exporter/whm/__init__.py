"""Talking to WHM API 1: the HTTP client and the pure parsers of its answers."""
