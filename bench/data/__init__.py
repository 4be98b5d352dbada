"""Stage 2, data: where images live and how they are loaded, placed and augmented; takes a DataConfig, returns ImageData."""
