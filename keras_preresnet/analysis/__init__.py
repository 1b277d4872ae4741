"""Measurements of a built model (multiply-adds)."""
