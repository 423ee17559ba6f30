"""The PRNG streams of a run, one salt each, so no two stages or methods draw from the same stream.

`step_key(seed, salt, step)` = fold_in(fold_in(PRNGKey(seed), salt), step): the key of training step
`step` of the stream `salt`. The salts are part of a run's reproducibility: changing one changes the
results of every run that uses it.
"""
from __future__ import annotations

import jax

R2RANK_ROLLOUT = 1      # R2Rank RL rollouts
R2REC_ROLLOUT = 2       # R2Rec GRPO rollouts
R2EC_ROLLOUT = 9        # R²ec RecPO rollouts


def step_key(seed: int, salt: int, step: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), salt), step)
