"""Optio security."""
