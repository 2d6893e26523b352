"""Pure reconcile decisions, one module per run kind."""
