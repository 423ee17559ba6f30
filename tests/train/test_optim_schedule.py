"""Learning-rate schedules against hand-computed values; bad schedule fields are refused."""
import math

import pytest

from r2rank_jax.config import ConfigError, OptimSpec
from r2rank_jax.train.optim import OptimConfig, learning_rate_schedule


def test_warmup_stable_decay_by_hand():
    lr = learning_rate_schedule(OptimConfig(learning_rate=2.0, warmup_steps=10, stable_steps=100, decay_steps=40,
                                            final_lr_ratio=0.1))
    def cosine(t):   # t steps into the decay: 2 * (0.1 + 0.9 * (1 + cos(pi t / 40)) / 2)
        return 2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / 40)))
    expected = {0: 0.0, 5: 1.0, 10: 2.0, 60: 2.0, 109: 2.0, 110: cosine(0), 120: cosine(10), 130: cosine(20),
                150: 0.2, 500: 0.2}
    for step, value in expected.items():
        assert float(lr(step)) == pytest.approx(value, rel=1e-6, abs=1e-7), step


def test_without_stable_steps_the_cosine_starts_after_warmup():
    lr = learning_rate_schedule(OptimConfig(learning_rate=1.0, warmup_steps=10, decay_steps=50, final_lr_ratio=0.1))
    assert [round(float(lr(s)), 6) for s in (0, 5, 10, 35, 60, 99)] == [0.0, 0.5, 1.0, 0.55, 0.1, 0.1]


def test_stable_steps_need_a_decay():
    with pytest.raises(ConfigError, match="stable_steps=5 needs decay_steps > 0"):
        OptimSpec(stable_steps=5)
    with pytest.raises(ConfigError, match="must be >= 0"):
        OptimSpec(warmup_steps=-1)
    with pytest.raises(ValueError, match="needs decay_steps > 0"):
        OptimConfig(stable_steps=5)
