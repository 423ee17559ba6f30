"""Analyses of a launcher workdir, one command each; every one writes WORKDIR/analyses/NAME.{md,json,png}.

    python -m r2rank_jax.analyses.position       --workdir DIR   # candidate position sensitivity (model)
    python -m r2rank_jax.analyses.history_order  --workdir DIR   # history-order randomization (model)
    python -m r2rank_jax.analyses.cross_domain   --workdir DIR --benchmark OTHER   # transfer (model)
    python -m r2rank_jax.analyses.cold_start     --workdir DIR   # item cold-start tiers (score files)
    python -m r2rank_jax.analyses.history_length --workdir DIR   # history-length strata (score files)

See docs/analyses.md.
"""
