"""What every stage uses: one-line errors, atomic writes and locks, registries, ranks, precision, code digests."""
