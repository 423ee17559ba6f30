"""The grounded teacher (r2rank_jax.teacher.grounded): evidence on constructed titles against hand-computed
values, the decision threshold, the reply format, determinism, the synthesize stage end to end, R2Rec's
grounded chain teacher, and the real Games-6k data (skipped without ../shared/data)."""
import dataclasses
import json

import pytest

from r2rank_jax.data.answers import parse_decision
from r2rank_jax.data.benchmark import Record, load_split, write_jsonl
from r2rank_jax.data.prompt_text import NOT_RECOMMEND, RECOMMEND
from r2rank_jax.teacher.base import Pair, TeacherRequest
from r2rank_jax.teacher.factory import TeacherSpec
from r2rank_jax.teacher.grounded import THRESHOLD, GroundedTeacher, Weights, match_score
from r2rank_jax.teacher.grounded_evidence import EvidenceIndex, content_words, franchise, platforms, same_franchise
from r2rank_jax.teacher.prompts import rationalization_message

TITLES = {"1": "Halo 3 - Xbox 360", "2": "Halo Wars - Xbox 360 (Platinum Hits)", "3": "Super Mario Galaxy - Nintendo Wii",
          "4": "Halo Reach", "5": "Mario Kart 8 - Wii U", "6": "PS4 Controller Charger", "7": "Tetris - Game Boy Advance"}
TRAIN = [Record("a", ("1", "3"), ("4", "6", "7"), "4"), Record("b", ("2", "3"), ("4", "5", "6"), "4"),
         Record("c", ("6",), ("2", "5", "7"), "2")]
# train counts: 1:1, 2:2, 3:2, 4:2, 6:1, 5:0, 7:0 -> sorted [0, 0, 1, 1, 2, 2, 2] over the 7 items


def _pair(record, candidate, message=None):
    return Pair(record=record, candidate=candidate, label=int(candidate == record.positive), history=record.history,
                user_message=message or "msg", prompt="p")


@pytest.fixture
def index():
    return EvidenceIndex.from_split(TITLES, TRAIN)


@pytest.mark.parametrize("title,expected", [
    ("Call of Duty - PS4", ("PS4",)), ("Uncharted - PlayStation 4", ("PS4",)), ("Playstation4 Camera", ("PS4",)),
    ("Spyro - PlayStation", ("PS1",)), ("Mario Kart 8 - Wii U", ("Wii U",)), ("Wii Sports", ("Wii",)),
    ("Pokemon X - Nintendo 3DS", ("3DS",)), ("DS Lite Case", ("DS",)), ("Gears 4 - Xbox One/Windows 10", ("PC", "Xbox One")),
    ("Halo 2 - Xbox", ("Xbox",)), ("Xbox360 Headset", ("Xbox 360",)), ("SimCity - Mac/PC", ("Mac", "PC")),
    ("Tetris - Gameboy Advance", ("GBA",)), ("Grandia", ()), ("Stand for PS3 / PS4", ("PS3", "PS4")),
])
def test_platform_aliases_are_normalised(title, expected):
    assert platforms(title) == expected


def test_franchise_key_and_content_words():
    assert franchise("Call of Duty 3 - PlayStation 2") == "call duty"
    assert franchise("Metal Gear Solid V: The Phantom Pain") == "metal gear"
    assert franchise("Super Mario RPG: Legend of the Seven Stars") == "super mario"
    assert franchise("PS4 Controller Charger") == "charger"          # platform and generic words dropped
    assert franchise("Xbox 360 Console") is None
    assert same_franchise("halo", "halo reach") and not same_franchise("halo wars", "halo reach")
    assert not same_franchise(None, "halo")
    assert content_words("Halo Wars - Xbox 360 (Platinum Hits)") == {"halo", "wars", "platinum", "hits"}
    assert content_words("FIFA Soccer 2002 - PC Digital Code") == {"fifa", "soccer", "2002"}


def test_evidence_equals_hand_computed_values(index):
    e = index.evidence(TRAIN[0], TRAIN[0].history, "4")       # Halo Reach vs Halo 3 (X360), Mario Galaxy (Wii)
    assert (e.platforms, e.platform_items, e.top_platform, e.history_platforms) == ((), 0, "Wii", ("Wii", "Xbox 360"))
    assert (e.franchise, e.franchise_items, e.shared_words) == ("halo reach", 1, ("halo",))
    assert e.popularity == 1 and e.percentile == pytest.approx(3 / 7) and e.bucket == "low"   # own positive left out
    e = index.evidence(TRAIN[1], TRAIN[1].history, "5")       # Mario Kart (Wii U) vs Halo Wars (X360), Mario Galaxy (Wii)
    assert (e.platforms, e.platform_items, e.franchise_items, e.shared_words) == (("Wii U",), 0, 0, ("mario",))
    assert e.popularity == 0 and e.percentile == pytest.approx(1 / 7) and e.bucket == "low"
    e = index.evidence(Record("t", ("1",), ("2", "3"), "2"), ("1",), "2")   # not a train user: nothing left out
    assert (e.platform_items, e.platform_share, e.popularity, e.bucket) == (1, 1.0, 2, "medium")
    assert e.percentile == pytest.approx((4 + 1.5) / 7)
    assert match_score(e) == pytest.approx(2 + 3 * 1.0 + 3 * 1 + 1.5 * 1 + 0.25 * 5.5 / 7)  # "halo" ~ "halo wars"
    high = EvidenceIndex(TITLES, {"1": 9, "2": 1}).evidence(Record("t", (), ("1",), "1"), (), "1")
    assert high.bucket == "high" and high.percentile == pytest.approx(6.5 / 7)


def test_unknown_item_is_a_clear_error(index):
    with pytest.raises(KeyError, match="user 'a': item '99' is not in the benchmark's items.jsonl"):
        index.evidence(TRAIN[0], ("1", "99"), "4")


def test_threshold_decides_and_the_reply_has_three_sections_and_an_answer(index):
    exact = Weights(popularity=0.0)       # Halo Reach for user a: 3 (series) + 1.5 (one word) = 4.5
    at = GroundedTeacher(index, exact, threshold=4.5).reason(TeacherRequest(_pair(TRAIN[0], "4"), "msg", 1))
    above = GroundedTeacher(index, exact, threshold=4.51).reason(TeacherRequest(_pair(TRAIN[0], "4"), "msg", 1))
    assert parse_decision(at) == RECOMMEND and parse_decision(above) == NOT_RECOMMEND
    lines = at.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["#Initial reasoning", "#Self-check",
                                                          "#Final conclusion and suggestion"]
    assert "series 'halo reach' in 1" in lines[0] and "shared words halo" in lines[0] and "2 of 3 signals" in lines[1]
    assert lines[3] == "<answer>Recommend</answer>" and "match 4.5 above 4.5" in lines[2]


def test_deterministic_and_the_answer_conditioned_retry(index):
    t = GroundedTeacher(index)
    pair = _pair(TRAIN[2], "2")                                   # the rule says Not Recommend, the label is 1
    first = t.reason(TeacherRequest(pair, "msg", 1))
    assert first == t.reason(TeacherRequest(pair, "msg", 1)) == t.reason(TeacherRequest(pair, "msg", 2))
    assert parse_decision(first) == NOT_RECOMMEND
    hinted = rationalization_message(pair.user_message, RECOMMEND)
    argued = t.reason(TeacherRequest(pair, hinted, 2))
    assert parse_decision(argued) == RECOMMEND and "yet the history may not show every taste" in argued
    assert parse_decision(t.reason(TeacherRequest(pair, hinted, 1))) == NOT_RECOMMEND   # attempt 1 stays honest


def test_spec_validates_the_threshold():
    assert TeacherSpec(kind="grounded").grounded_threshold is None
    with pytest.raises(ValueError, match="grounded_threshold"):
        TeacherSpec(kind="grounded", grounded_threshold=-1.0)


def test_synthesize_stage_end_to_end(tiny_world, tmp_path):
    from r2rank_jax.teacher.synthesize import SynthesisConfig, synthesize_benchmark

    bench = tmp_path / "bench"
    bench.mkdir()
    write_jsonl(bench / "items.jsonl", [{"item_id": i, "title": t} for i, t in TITLES.items()])
    write_jsonl(bench / "train.jsonl", [r.to_json() for r in TRAIN])
    for split in ("valid", "test"):
        write_jsonl(bench / f"{split}.jsonl", [TRAIN[0].to_json()])
    stats = synthesize_benchmark(bench, tmp_path / "out", TeacherSpec(kind="grounded"),
                                 SynthesisConfig(negatives_per_user=2), tokenizer_dir=str(tiny_world[1]))
    done = {(d["user_id"], d["candidate"]): d["outcome"] for d in map(json.loads, open(tmp_path / "out" / "done.jsonl"))}
    # hand-computed: Mario Kart for b shares "mario" (1.54 >= 0.88, label 0); Halo Wars for c shares nothing (label 1)
    assert {k for k, v in done.items() if v != "accepted"} == {("b", "5"), ("c", "2")} and len(done) == 9
    assert stats["accepted"] == 7 and stats["teacher"] == f"grounded(threshold={THRESHOLD:g})"
    corpus = [json.loads(line) for line in open(tmp_path / "out" / "corpus.jsonl")]
    assert all(parse_decision(c["response"]) == (RECOMMEND if c["label"] else NOT_RECOMMEND) for c in corpus)


def test_r2rec_grounded_chain_teacher_finds_the_positive_from_its_claims(index):
    from r2rank_jax.methods.r2rec_chains import Chain
    from r2rank_jax.methods.r2rec_grounded import GroundedChainTeacher
    from r2rank_jax.methods.r2rec_teacher import ChainPair, mask_answer

    record = Record("u", ("1", "2", "3"), ("6", "4", "7"), "4")
    pair = ChainPair(record=record, candidate="4", label=1, history=("1", "2", "3"), user_message="m", prompt="p",
                     chains=(Chain("u", "1", "v", "2"),), items=("1", "2", "3"))
    t = GroundedChainTeacher(index)
    text = t.write(pair)
    assert text.splitlines()[:2] == ["Step 1: C1 items share Xbox 360, series 'halo'.",
                                     "Step 2: candidate [2] series 'halo reach', words halo; fits C1."]
    assert text.endswith("<answer>2 > 1 > 3</answer>")
    steps = mask_answer(text.splitlines()[:2], 2, TITLES["4"])
    assert "[2]" not in steps[1]
    assert t.verify(dataclasses.replace(pair, stage="verify", steps=steps)).startswith("<answer>2 >")


@pytest.mark.shared_data
def test_on_games_6k_the_rule_beats_popularity(shared_data_dir, tmp_path):
    from r2rank_jax.baselines import common, popularity
    from r2rank_jax.data.prepare import prepare
    from r2rank_jax.eval.evaluate import mean_metrics

    bench = tmp_path / "benchmark"
    prepare(f"recbole:{shared_data_dir / 'amazon18_video_games' / 'Games-6k'}", str(bench), verbose=False,
            history_len=10, split="user", negatives="popularity")
    teacher = GroundedTeacher.from_benchmark(bench)
    train, test = load_split(bench, "train"), load_split(bench, "test")[:300]
    right = [(teacher.score(_pair(r, c)) >= THRESHOLD) == (c == r.positive) for r in train[:300]
             for c in (r.positive, next(x for x in r.candidates if x != r.positive))]
    assert sum(right) / len(right) > 0.65
    import numpy as np

    ours = mean_metrics(test, np.asarray([[teacher.score(_pair(r, c)) for c in r.candidates] for r in test]))
    pop = mean_metrics(test, popularity.popularity_scores(train, test, common.ItemIndex.from_benchmark(bench)))
    print(ours["ndcg@10"], pop["ndcg@10"])
    assert ours["ndcg@10"] > pop["ndcg@10"] + 0.15
