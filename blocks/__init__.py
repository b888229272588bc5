"""Block Kit builders: pure functions, data in, dict out (golden-file tested)."""
