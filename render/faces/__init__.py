"""Face sources: the embedded procedural morphable model and loaders for real ones."""
