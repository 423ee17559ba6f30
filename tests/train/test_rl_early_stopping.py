"""Early stopping survives a resume: its counters travel with the data iterator's checkpointed state."""
import math

from r2rank_jax.methods.r2rank.rl import EarlyStopping, _Until


class Counter:
    def __init__(self):
        self.i = 0

    def __next__(self):
        self.i += 1
        return self.i

    def get_state(self):
        return {"i": self.i}

    def set_state(self, state):
        self.i = state["i"]


def test_patience_counts_evaluations_without_improvement():
    s = EarlyStopping(patience=2)
    for value, stop in [(0.3, False), (0.5, False), (0.5, False), (0.4, True)]:
        s.update(value)
        assert s.stop is stop
    assert s.best == 0.5 and s.bad == 2


def test_resumed_iterator_restores_data_position_and_counters():
    flag = EarlyStopping(patience=3)
    it = _Until(flag, Counter())
    next(it), next(it)
    flag.update(0.4), flag.update(0.2)
    saved = it.get_state()

    fresh_flag = EarlyStopping(patience=3)
    resumed = _Until(fresh_flag, Counter())
    resumed.set_state(saved)
    assert (fresh_flag.best, fresh_flag.bad, fresh_flag.stop) == (0.4, 1, False)
    assert next(resumed) == 3
    # Two more evaluations without improvement stop the resumed run exactly as the uninterrupted one.
    for f in (flag, fresh_flag):
        f.update(0.1), f.update(0.3)
    assert flag.stop and fresh_flag.stop


def test_state_before_any_evaluation_and_old_checkpoints():
    flag = EarlyStopping(patience=2)
    it = _Until(flag, Counter())
    other = EarlyStopping(patience=2)
    _Until(other, Counter()).set_state(it.get_state())
    assert math.isinf(other.best) and other.best < 0 and other.bad == 0
    # A checkpoint written before the counters were saved holds the data state alone.
    legacy = _Until(EarlyStopping(patience=2), Counter())
    legacy.set_state(b'{"i": 7}')
    assert next(legacy) == 8
