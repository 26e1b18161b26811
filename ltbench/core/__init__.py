"""The ground floor: errors, the name registry, atomic file writes and provenance. Imports nothing else of ltbench."""
