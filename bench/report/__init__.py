"""Stage 6, reporting: reads records, aggregates, renders tables and figures, published numbers, export, the regression check."""
