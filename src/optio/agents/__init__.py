"""Agent adapters: how to start each vendor CLI and how to read what it prints."""
