"""A small aiortc-based Realtime client (used by tests, benchmarks and `openrealtime` tools)."""
