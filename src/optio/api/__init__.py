"""Optio api."""
