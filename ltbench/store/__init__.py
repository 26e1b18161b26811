"""The results store: run records in their folders (the truth) and their SQLite index."""
