"""Optio control."""
