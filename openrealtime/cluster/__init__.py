"""Running as a cluster: the store nodes share (store.py; Redis or SQLite) and node-to-node auth (auth.py)."""
