"""HTTP signaling: FastAPI routes, auth, OpenAI-shaped errors."""
