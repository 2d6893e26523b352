"""Optio cli."""
