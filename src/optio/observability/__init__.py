"""What Optio tells an operator about itself: Prometheus metrics and OpenTelemetry traces."""
