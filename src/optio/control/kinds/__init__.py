"""One handler per run kind."""
