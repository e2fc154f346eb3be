"""Model backends behind small interfaces (see `base.py`)."""
