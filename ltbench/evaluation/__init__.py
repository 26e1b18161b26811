"""Per-class statistics and the many / medium / few class groups: pure NumPy, no model."""
