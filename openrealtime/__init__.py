"""openrealtime: a self-hosted OpenAI Realtime API compatible voice & vision server."""

__version__ = "0.1.0"
