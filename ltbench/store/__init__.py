"""The results store: run records in their folders (the truth) and their index (SQLite or PostgreSQL)."""
