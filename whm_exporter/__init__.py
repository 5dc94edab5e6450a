"""Prometheus exporter for cPanel & WHM mail."""

__version__ = "0.1.0"
