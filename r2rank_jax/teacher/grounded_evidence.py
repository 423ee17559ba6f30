"""Title evidence for the grounded teacher: platforms, franchise key, content words, popularity.

Everything is computed from the item titles the prompt shows (HTML-unescaped, `prompt_text.clean_text`)
and, for popularity, from the train split's interaction counts (history + positive of every train
record, as the popularity baseline counts them).

- **platforms**: the canonical platforms whose aliases (`PLATFORMS`, case-insensitive, whole words)
  occur in a title; a title can name several (accessories "for PS3 / PS4 / Xbox 360"). At each position
  the longest alias wins ("Xbox 360" before "Xbox", "Wii U" before "Wii", "PlayStation 4" before the bare
  "PlayStation", which means the first PlayStation).
- **franchise**: the words before the first ``:``, `` - ``, ``(``, ``[`` or the first word holding a digit or
  a roman numeral II–X, lowercased, with stop words, platform aliases, maker names and `GENERIC` words removed; the key
  is the first two of the remaining words ("Call of Duty 3 - PlayStation 2" -> "call duty", "Metal Gear
  Solid V: ..." -> "metal gear"). Two keys match when equal, or when one is a single word and is the
  other's first word ("fifa" ~ "fifa soccer"). None when no word remains.
- **content words**: the lowercase alphanumeric words of a title (length >= 3, or holding a digit and length >= 2),
  minus stop words, platform aliases, maker names (Nintendo, Sony, Microsoft, Sega) and `GENERIC`.
- **popularity**: train interactions of the candidate; its percentile is the mid-rank among all items of
  ``items.jsonl`` ((#items with fewer + half of #items with as many) / #items); buckets `high` >= 0.9,
  `medium` >= 0.6, `low` below. For a *train* user's own positive, that user's interaction is left out
  (count - 1), so train pairs see the candidate's popularity as a test user would.
"""
from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from r2rank_jax.data.benchmark import Record

# canonical name -> aliases (lowercase; matched as whole words, whitespace-tolerant)
PLATFORMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PS4", ("playstation 4", "ps4", "ps 4", "ps4 pro")),
    ("PS3", ("playstation 3", "ps3", "ps 3", "playstation move", "ps move")),
    ("PS2", ("playstation 2", "ps2", "ps 2")),
    ("PS Vita", ("playstation vita", "ps vita", "psvita", "psv", "vita")),
    ("PSP", ("playstation portable", "psp")),
    ("PS1", ("playstation one", "ps one", "psone", "ps1", "playstation")),
    ("Xbox One", ("xbox one",)),
    ("Xbox 360", ("xbox 360", "xbox360", "x360")),
    ("Xbox", ("xbox", "original xbox")),
    ("Switch", ("nintendo switch", "switch")),
    ("Wii U", ("wii u", "wiiu")),
    ("Wii", ("wii",)),
    ("3DS", ("nintendo 3ds", "3ds", "3ds xl", "2ds", "new 3ds")),
    ("DS", ("nintendo ds", "ds lite", "dsi", "dsi xl", "nds", "ds")),
    ("GBA", ("game boy advance", "gameboy advance", "gba")),
    ("Game Boy", ("game boy color", "gameboy color", "game boy", "gameboy", "gbc")),
    ("GameCube", ("gamecube", "game cube", "ngc")),
    ("N64", ("nintendo 64", "n64")),
    ("SNES", ("super nintendo", "snes")),
    ("NES", ("nes",)),
    ("Genesis", ("sega genesis", "genesis", "mega drive")),
    ("Dreamcast", ("dreamcast", "sega dreamcast")),
    ("PC", ("pc", "windows", "pc download", "pc dvd")),
    ("Mac", ("mac", "macintosh", "os x")),
)
_ALIAS = {a: name for name, aliases in PLATFORMS for a in aliases}
_PLATFORM_RE = re.compile(r"(?<![a-z0-9])(" + "|".join(
    re.escape(a).replace(r"\ ", r"\s*") for a in sorted(_ALIAS, key=len, reverse=True)) + r")(?![a-z0-9])")
_SQUASHED = {a.replace(" ", ""): name for a, name in _ALIAS.items()}  # "ps 4" ~ "ps4"
_MAKERS = frozenset({"nintendo", "sony", "microsoft", "sega"})  # platform aliases themselves are cut out of the text

STOP_WORDS = frozenset(
    "a an and the of for to in on with by from at or vs is it its your you my new all one two edition".split())
# product-page words that say nothing about taste
GENERIC = frozenset(
    "game games video digital code download online version pack bundle set standard deluxe limited collector "
    "collectors special complete ultimate premium gold goty year black white red blue green pink case cover "
    "controller console system kit official officially licensed import renewed discontinued manufacturer "
    "replacement compatible".split())
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_ROMAN = frozenset("ii iii iv v vi vii viii ix x".split())
_FRANCHISE_CUT = re.compile(r":| - | – |\(|\[")
BUCKETS = ((0.9, "high"), (0.6, "medium"), (0.0, "low"))


def platforms(title: str) -> tuple[str, ...]:
    """Canonical platforms named in ``title`` (sorted, distinct)."""
    return tuple(sorted({_SQUASHED[re.sub(r"\s+", "", m.group(1))] for m in _PLATFORM_RE.finditer(title.lower())}))


def _words(text: str) -> list[str]:
    return _WORD.findall(_PLATFORM_RE.sub(" ", text.lower()))


def content_words(title: str) -> frozenset[str]:
    return frozenset(w for w in _words(title) if w not in STOP_WORDS and w not in _MAKERS
                     and w not in GENERIC and (len(w) >= 3 or (len(w) >= 2 and any(c.isdigit() for c in w))))


def franchise(title: str) -> str | None:
    """The franchise key of ``title`` (module docstring), or None."""
    head = _FRANCHISE_CUT.split(title.lower(), maxsplit=1)[0]
    kept = []
    for w in _words(head):
        if any(c.isdigit() for c in w) or w in _ROMAN:
            break
        if w not in STOP_WORDS and w not in _MAKERS and w not in GENERIC:
            kept.append(w)
    return " ".join(kept[:2]) or None


def same_franchise(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    if a == b:
        return True
    wa, wb = a.split(), b.split()
    return (len(wa) == 1 and wa[0] == wb[0]) or (len(wb) == 1 and wb[0] == wa[0])


def bucket(percentile: float) -> str:
    return next(name for lo, name in BUCKETS if percentile >= lo)


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What the grounded teacher knows about one (user, candidate) pair."""

    num_history: int                   # history items shown
    platforms: tuple[str, ...]         # the candidate's platforms
    platform_items: int                # history items naming at least one of them
    top_platform: str | None           # the history's most named platform (ties: alphabetical)
    history_platforms: tuple[str, ...]  # every platform the history names, most named first (ties: alphabetical)
    franchise: str | None              # the candidate's franchise key
    franchise_items: int               # history items of the same franchise
    shared_words: tuple[str, ...]      # candidate content words found in a history title (sorted)
    popularity: int                    # train interactions of the candidate
    percentile: float                  # its popularity percentile among all items
    bucket: str                        # "high" | "medium" | "low"

    @property
    def platform_share(self) -> float:
        return self.platform_items / self.num_history if self.num_history else 0.0


class EvidenceIndex:
    """Titles' features per item and train popularity; `evidence(record, history, candidate)`.

    ``titles``: item id -> the title as the prompt shows it; ``popularity``: item id -> train interactions
    (items absent count 0); ``train_positives``: train user id -> that user's train positive (for the
    leave-own-interaction-out popularity of train pairs).
    """

    def __init__(self, titles: Mapping[str, str], popularity: Mapping[str, int],
                 train_positives: Mapping[str, str] | None = None):
        self.titles = titles
        self.popularity = popularity
        self.train_positives = dict(train_positives or {})
        counts = sorted(popularity.get(i, 0) for i in titles)
        self._sorted = counts
        self._features: dict[str, tuple[tuple[str, ...], str | None, frozenset[str]]] = {}

    @classmethod
    def from_split(cls, titles: Mapping[str, str], train: Iterable[Record]) -> EvidenceIndex:
        train = list(train)
        return cls(titles, train_popularity(train), {r.user_id: r.positive for r in train})

    def features(self, item: str, who: str = "") -> tuple[tuple[str, ...], str | None, frozenset[str]]:
        """(platforms, franchise key, content words) of one item; unknown id -> KeyError naming it."""
        if item not in self._features:
            if item not in self.titles:
                raise KeyError(f"{who}item {item!r} is not in the benchmark's items.jsonl")
            t = self.titles[item]
            self._features[item] = (platforms(t), franchise(t), content_words(t))
        return self._features[item]

    def percentile(self, count: int) -> float:
        import bisect

        lo, hi = bisect.bisect_left(self._sorted, count), bisect.bisect_right(self._sorted, count)
        return (lo + 0.5 * (hi - lo)) / max(len(self._sorted), 1)

    def evidence(self, record: Record, history: Sequence[str], candidate: str) -> Evidence:
        who = f"user {record.user_id!r}: "
        plats, key, words = self.features(candidate, who)
        hist = [self.features(h, who) for h in history]
        named = Counter(p for hp, _, _ in hist for p in hp)
        ranked = tuple(sorted(named, key=lambda p: (-named[p], p)))
        seen = frozenset().union(*(w for _, _, w in hist)) if hist else frozenset()
        count = self.popularity.get(candidate, 0)
        if self.train_positives.get(record.user_id) == candidate:
            count = max(count - 1, 0)
        pct = self.percentile(count)
        return Evidence(num_history=len(history), platforms=plats,
                        platform_items=sum(bool(set(plats) & set(hp)) for hp, _, _ in hist),
                        top_platform=ranked[0] if ranked else None, history_platforms=ranked,
                        franchise=key, franchise_items=sum(same_franchise(key, k) for _, k, _ in hist),
                        shared_words=tuple(sorted(words & seen)), popularity=count, percentile=pct,
                        bucket=bucket(pct))


def train_popularity(train: Iterable[Record]) -> dict[str, int]:
    """item id -> interactions in the train split (history + positive per record)."""
    counts: Counter[str] = Counter()
    for r in train:
        counts.update(r.history)
        counts[r.positive] += 1
    return dict(counts)
