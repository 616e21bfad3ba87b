"""Small shared helpers: atomic writes, provenance, progress bars, fixtures lookup."""
