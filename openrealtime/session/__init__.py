"""Transport-agnostic Realtime session engine."""
