"""A seeded synthetic recommendation world: the embedded data of the demo and of fast tests.

Items are games whose titles spell out their attributes,
``"Nebula Racer Deluxe - Racing - PS5 - Vortex Games"`` = ``"{name} - {genre} - {platform} - {brand}"``
(the name may carry an edition word). Each user has a latent preferred genre, platform and brand; a
user's items are drawn without replacement with probability proportional to
``genre_weight**[genre matches] * platform_weight**[...] * brand_weight**[...]``, so most match the
taste and some are noise, and are put in a random chronological order. The last item (the positive of
the ``user`` split) is therefore inferable from the titles of the history, which
`attribute_match_scores` (the oracle) shows: it ranks the positive far above random.

Files (RecBole atomic, read by ``recbole:DIR/world``):

- ``world.item``: ``item_id:token title:token_seq genre:token_seq platform:token_seq brand:token_seq
  edition:token_seq`` — the attribute columns become optional item fields in ``items.jsonl`` (the
  "known attributes" a scripted teacher can reason over; prompts show the title only by default);
- ``world.inter``: one row per interaction ``user_id:token item_id:token timestamp:float``;
- ``world.user``: ``user_id:token age_group:token favorite_platform:token_seq`` (the favorite platform,
  the true latent one, is filled for a ``profile_share`` of users), the optional profile text;
- ``world.json``: the generator config and every user's latent preferences (for analyses).

    python -m r2rank_jax.data.synthetic --out DIR [--users 600] [--items 300] [--seed 0]
        [--tokenizer_vocab 1024] [--overwrite]

writes ``DIR/recbole/world.*``, the prepared benchmark ``DIR/benchmark`` (`prepare.prepare`) and,
unless ``--tokenizer_vocab 0``, the world's tokenizer ``DIR/tokenizer`` (`tokenizer`).
Same config -> byte-identical files.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import pathlib
import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from r2rank_jax.data import benchmark
from r2rank_jax.data.prepare import prepare
from r2rank_jax.data.staging import check_target

NAME = "world"
ATTRIBUTES: tuple[str, ...] = ("genre", "platform", "brand", "edition")
PREFERENCE_ATTRIBUTES: tuple[str, ...] = ("genre", "platform", "brand")

GENRES = ("Racing", "Puzzle", "Shooter", "Role-Playing", "Sports", "Strategy", "Platformer", "Horror")
PLATFORMS = ("PS5", "Xbox Series X", "Switch", "PC", "PS4")
BRANDS = ("Vortex Games", "Lumen Studios", "Ironclad Interactive", "Pixel Harbor", "Red Maple", "Northwind Soft")
EDITIONS = ("Standard", "Deluxe", "Gold Edition", "Remastered")
_EDITION_P = (0.55, 0.2, 0.1, 0.15)
AGE_GROUPS = ("13-17", "18-24", "25-34", "35-44", "45+")
_ADJECTIVES = (
    "Nebula", "Crimson", "Silent", "Iron", "Golden", "Shadow", "Crystal", "Frozen", "Wild", "Hidden", "Neon",
    "Ancient", "Stellar", "Broken", "Electric", "Lost", "Savage", "Cosmic", "Emerald", "Thunder",
)
_NOUNS = (
    "Racer", "Kingdom", "Legends", "Odyssey", "Arena", "Frontier", "Tactics", "Quest", "Storm", "Empire",
    "Circuit", "Harbor", "Dungeon", "Squadron", "Horizon", "Puzzle Box", "League", "Outpost", "Saga", "Rift",
)
_SEQUELS = ("", " II", " III", " IV", " Zero", " Origins", " Reborn", " Unleashed")



@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Sizes and taste strength of the world. Sequence lengths include the final (positive) item."""

    num_users: int = 600
    num_items: int = 300
    seed: int = 0
    min_length: int = 6
    max_length: int = 22
    genre_weight: float = 25.0
    platform_weight: float = 12.0
    brand_weight: float = 4.0
    profile_share: float = 0.5
    start_time: int = 1_600_000_000  # seconds

    def __post_init__(self) -> None:
        if self.num_items < self.max_length or self.num_items < 20:
            raise ValueError(f"num_items ({self.num_items}) must be >= max_length ({self.max_length}) and >= 20")
        if not 2 <= self.min_length <= self.max_length:
            raise ValueError(f"need 2 <= min_length <= max_length, got {self.min_length}, {self.max_length}")
        if self.num_users < 1:
            raise ValueError(f"num_users must be >= 1, got {self.num_users}")
        if self.num_items > len(_ADJECTIVES) * len(_NOUNS) * len(_SEQUELS):
            raise ValueError(f"num_items must be <= {len(_ADJECTIVES) * len(_NOUNS) * len(_SEQUELS)}")


@dataclasses.dataclass(frozen=True)
class SyntheticItem:
    item_id: str
    title: str
    attributes: Mapping[str, str]  # ATTRIBUTES -> value


@dataclasses.dataclass(frozen=True)
class SyntheticUser:
    user_id: str
    preferences: Mapping[str, str]  # PREFERENCE_ATTRIBUTES -> value (latent)
    profile: Mapping[str, str]  # age_group, favorite_platform ("" when not disclosed)
    item_ids: tuple[str, ...]  # chronological
    timestamps: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class World:
    config: WorldConfig
    items: tuple[SyntheticItem, ...]
    users: tuple[SyntheticUser, ...]

    def item_attributes(self) -> dict[str, dict[str, str]]:
        """item id -> ``{attribute: value}`` for every item."""
        return {it.item_id: dict(it.attributes) for it in self.items}


def make_title(name: str, attributes: Mapping[str, str]) -> str:
    edition = attributes["edition"]
    full = name if edition == "Standard" else f"{name} {edition}"
    return f"{full} - {attributes['genre']} - {attributes['platform']} - {attributes['brand']}"


def _make_items(cfg: WorldConfig, rng: np.random.Generator) -> tuple[SyntheticItem, ...]:
    names = [f"{a} {n}{s}" for s, a, n in itertools.product(_SEQUELS, _ADJECTIVES, _NOUNS)]
    base = len(_ADJECTIVES) * len(_NOUNS)
    # Plain names first (random pairs), sequels only when the catalog outgrows them.
    order = np.concatenate([rng.permutation(base) + base * s for s in range(len(_SEQUELS))])[: cfg.num_items]
    items = []
    for i, name_idx in enumerate(order):
        attrs = {
            "genre": GENRES[rng.integers(len(GENRES))],
            "platform": PLATFORMS[rng.integers(len(PLATFORMS))],
            "brand": BRANDS[rng.integers(len(BRANDS))],
            "edition": EDITIONS[rng.choice(len(EDITIONS), p=_EDITION_P)],
        }
        items.append(SyntheticItem(str(i), make_title(names[name_idx], attrs), attrs))
    return tuple(items)


def _make_users(cfg: WorldConfig, items: Sequence[SyntheticItem], rng: np.random.Generator) -> tuple[SyntheticUser, ...]:
    weights = {"genre": cfg.genre_weight, "platform": cfg.platform_weight, "brand": cfg.brand_weight}
    vocab = {"genre": GENRES, "platform": PLATFORMS, "brand": BRANDS}
    users = []
    for u in range(cfg.num_users):
        prefs = {a: vocab[a][rng.integers(len(vocab[a]))] for a in PREFERENCE_ATTRIBUTES}
        w = np.ones(len(items))
        for a in PREFERENCE_ATTRIBUTES:
            w *= np.where([it.attributes[a] == prefs[a] for it in items], weights[a], 1.0)
        n = int(rng.integers(cfg.min_length, cfg.max_length + 1))
        chosen = rng.choice(len(items), size=n, replace=False, p=w / w.sum())
        chosen = chosen[rng.permutation(n)]  # chronology independent of the draw order
        gaps = rng.integers(3_600, 30 * 86_400, size=n)
        times = cfg.start_time + int(rng.integers(0, 365 * 86_400)) + np.cumsum(gaps)
        profile = {
            "age_group": AGE_GROUPS[rng.integers(len(AGE_GROUPS))],
            "favorite_platform": prefs["platform"] if rng.random() < cfg.profile_share else "",
        }
        users.append(SyntheticUser(str(u), prefs, profile, tuple(items[i].item_id for i in chosen),
                                   tuple(int(t) for t in times)))
    return tuple(users)


def generate_world(config: WorldConfig = WorldConfig()) -> World:
    """The world of ``config`` (deterministic in ``config.seed``)."""
    rng = np.random.default_rng(config.seed)
    items = _make_items(config, rng)
    return World(config, items, _make_users(config, items, rng))


def _tsv(rows: Sequence[Sequence[str]]) -> str:
    for row in rows:
        for field in row:
            if "\t" in field or "\n" in field:
                raise ValueError(f"field {field!r} holds a tab or newline")
    return "".join("\t".join(r) + "\n" for r in rows)


def write_recbole(world: World, directory: str | os.PathLike[str], name: str = NAME) -> pathlib.Path:
    """Writes ``name.item``, ``name.inter``, ``name.user`` and ``name.json``; returns ``DIR/name`` (the
    prefix of the ``recbole:`` input spec)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    item_rows = [["item_id:token", "title:token_seq", *(f"{a}:token_seq" for a in ATTRIBUTES)]]
    item_rows += [[it.item_id, it.title, *(it.attributes[a] for a in ATTRIBUTES)] for it in world.items]
    inter_rows = [["user_id:token", "item_id:token", "timestamp:float"]]
    inter_rows += [[u.user_id, i, str(t)] for u in world.users for i, t in zip(u.item_ids, u.timestamps)]
    user_rows = [["user_id:token", "age_group:token", "favorite_platform:token_seq"]]
    user_rows += [[u.user_id, u.profile["age_group"], u.profile["favorite_platform"]] for u in world.users]
    files = {".item": _tsv(item_rows), ".inter": _tsv(inter_rows), ".user": _tsv(user_rows)}
    meta = {"config": dataclasses.asdict(world.config),
            "preferences": {u.user_id: dict(u.preferences) for u in world.users}}
    files[".json"] = benchmark.dumps(meta, indent=1) + "\n"
    for suffix, text in files.items():
        (directory / f"{name}{suffix}").write_bytes(text.encode("utf-8"))
    return directory / name


def build_benchmark(
    out: str | os.PathLike[str],
    config: WorldConfig = WorldConfig(),
    *,
    history_len: int = 20,
    num_candidates: int = 20,
    negatives: str = "uniform",
    overwrite: bool = False,
    verbose: bool = False,
) -> dict[str, Any]:
    """Generates the world into ``out/recbole`` and prepares ``out/benchmark`` (split ``user``, ``negatives``
    uniform or popularity-weighted, prepare seed = world seed); returns the benchmark manifest. Its ``source`` names
    ``out``, so only runs into the same ``out`` give byte-identical manifests (the JSONL files and
    atomic files are identical anywhere)."""
    if config.num_items < config.max_length + num_candidates - 1:
        raise ValueError(f"num_items={config.num_items} leaves too few negatives: a user with max_length="
                         f"{config.max_length} items needs {num_candidates - 1} others (num_items >= "
                         f"{config.max_length + num_candidates - 1})")
    out = check_target(out, overwrite)
    if overwrite:
        for sub in ("recbole", "benchmark", "tokenizer"):
            shutil.rmtree(out / sub, ignore_errors=True)
    prefix = write_recbole(generate_world(config), out / "recbole")
    return prepare(f"recbole:{prefix}", str(out / "benchmark"), seed=config.seed, history_len=history_len,
                   num_candidates=num_candidates, negatives=negatives, verbose=verbose)


def load_item_attributes(benchmark_dir: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """item id -> ``{attribute: value}`` from a prepared synthetic benchmark's ``items.jsonl``."""
    items = benchmark.load_items(benchmark_dir)
    missing = [i for i, obj in items.items() if any(a not in obj for a in ATTRIBUTES)]
    if missing:
        raise ValueError(f"{benchmark_dir}: items {missing[:5]} lack the attributes {ATTRIBUTES} "
                         "(not a synthetic-world benchmark?)")
    return {i: {a: obj[a] for a in ATTRIBUTES} for i, obj in items.items()}


def attribute_match_scores(
    attributes: Mapping[str, Mapping[str, str]],
    history: Sequence[str],
    candidates: Sequence[str],
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """`[K]` oracle scores: per candidate, the weighted share of history items sharing each attribute
    value (default weights: the world's taste weights, log scale)."""
    if weights is None:
        cfg = WorldConfig()
        weights = {"genre": np.log(cfg.genre_weight), "platform": np.log(cfg.platform_weight),
                   "brand": np.log(cfg.brand_weight)}
    scores = np.zeros(len(candidates))
    if not history:
        return scores
    for a, w in weights.items():
        counts: dict[str, int] = {}
        for h in history:
            value = attributes[h][a]
            counts[value] = counts.get(value, 0) + 1
        scores += w * np.array([counts.get(attributes[c][a], 0) for c in candidates]) / len(history)
    return scores


def oracle_scores(benchmark_dir: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """(oracle scores `[N, K]`, relevance `[N, K]`) of a prepared synthetic benchmark split."""
    attributes = load_item_attributes(benchmark_dir)
    records = benchmark.load_split(benchmark_dir, split)
    scores = np.stack([attribute_match_scores(attributes, r.history, r.candidates) for r in records])
    relevance = np.array([[int(c == r.positive) for c in r.candidates] for r in records], dtype=np.int32)
    return scores, relevance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r2rank_jax.data.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory (gets recbole/ and benchmark/)")
    parser.add_argument("--users", type=int, default=WorldConfig.num_users)
    parser.add_argument("--items", type=int, default=WorldConfig.num_items)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--history_len", type=int, default=20)
    parser.add_argument("--num_candidates", type=int, default=20)
    parser.add_argument("--tokenizer_vocab", type=int, default=1024, help="0: no tokenizer")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = WorldConfig(num_users=args.users, num_items=args.items, seed=args.seed)
        manifest = build_benchmark(args.out, config, history_len=args.history_len,
                                   num_candidates=args.num_candidates, overwrite=args.overwrite, verbose=True)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.tokenizer_vocab:
        from r2rank_jax.data.tokenizer import train_world_tokenizer

        out = pathlib.Path(args.out)
        shutil.rmtree(out / "tokenizer", ignore_errors=True)
        train_world_tokenizer(out / "benchmark", out / "tokenizer", args.tokenizer_vocab)
    print(json.dumps({"out": args.out, "counts": manifest["counts"], "content_hash": manifest["content_hash"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
