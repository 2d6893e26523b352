"""Optio tickets."""
