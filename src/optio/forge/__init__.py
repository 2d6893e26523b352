"""Optio forge."""
