"""The pure core: states, decisions and templates. Imports nothing else from optio and does no I/O."""
