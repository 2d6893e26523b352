"""Optio store."""
