"""Optio web."""
