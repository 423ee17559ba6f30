"""The method registry: `@register` a `MethodBase` subclass in its own module under r2rank_jax/methods/;
`get(name)` finds it (every module of the package is imported once, on first use, so adding a method
touches its own module and nothing else)."""
from __future__ import annotations

import importlib
import pkgutil

from r2rank_jax.config import ConfigError, ExperimentConfig
from r2rank_jax.methods.protocol import Method, MethodBase, Scorer, stages_of

PRIMARY = "r2rank"          # the paper's method: listed first
_REGISTRY: dict[str, Method] = {}
_discovered = False


def register(cls: type[MethodBase]) -> type[MethodBase]:
    """Class decorator: registers one instance of `cls` under `cls.name` (a name taken twice is an error)."""
    if not cls.name:
        raise TypeError(f"{cls.__qualname__}: a registered method needs a class attribute `name`")
    if cls.name in _REGISTRY and type(_REGISTRY[cls.name]) is not cls:
        raise ValueError(f"method {cls.name!r} is registered twice ({type(_REGISTRY[cls.name]).__module__} "
                         f"and {cls.__module__})")
    _REGISTRY[cls.name] = cls()
    return cls


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    import r2rank_jax.methods as package

    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
    _discovered = True


def known() -> tuple[str, ...]:
    _discover()
    return tuple(sorted(_REGISTRY, key=lambda n: (n != PRIMARY, n)))


def get(name: str) -> Method:
    """The registered method `name`; an unknown name is a ConfigError naming the field and the known ones."""
    _discover()
    if name not in _REGISTRY:
        raise ConfigError(f"method: unknown method {name!r}; known: {', '.join(known())}")
    return _REGISTRY[name]


def describe() -> str:
    """One line per registered method: its stages and its scorers (the launcher's --help)."""
    lines = []
    for name in known():
        m = _REGISTRY[name]
        stages = ", ".join(stages_of(m)) or "none"
        scorers = ", ".join(m.scorers()) or "none"
        lines.append(f"  {name:<20} stages: {stages}; scores: {scorers} — {m.summary}")
    return "\n".join(lines)


def scorer_owners() -> dict[str, tuple[str, Scorer]]:
    """{scorer name: (method name, Scorer)} over every registered method."""
    out: dict[str, tuple[str, Scorer]] = {}
    for name in known():
        for scorer_name, scorer in _REGISTRY[name].scorers().items():
            if scorer_name in out:
                raise ValueError(f"scorer {scorer_name!r} is offered by methods {out[scorer_name][0]!r} and {name!r}")
            out[scorer_name] = (name, scorer)
    return out


def plans(cfg: ExperimentConfig) -> dict[str, dict]:
    """{method: its plans(cfg)} for every registered method (the Spec-wiring test's view)."""
    return {name: get(name).plans(cfg) for name in known()}
