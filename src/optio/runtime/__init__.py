"""Optio runtime."""
