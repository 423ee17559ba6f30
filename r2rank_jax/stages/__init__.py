"""The stages every method shares: `prepare` (the benchmark and its saved candidate lists) and `eval`
(every method's scorers on the same candidates). The method-specific stages live in r2rank_jax.methods."""
