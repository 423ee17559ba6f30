"""Rationale fidelity: logged rationales against the grounded teacher's text for the same pair, on constructed
titles with hand-counted agreement shares and NDCG values, and the command on a minimal workdir."""
import dataclasses
import json

import pytest

from r2rank_jax.analyses import rationale_fidelity as fidelity
from r2rank_jax.config import ExperimentConfig, to_dict
from r2rank_jax.data.benchmark import Record, write_jsonl
from r2rank_jax.teacher.grounded import THRESHOLD, match_score, rationale
from r2rank_jax.teacher.grounded_evidence import EvidenceIndex

TITLES = {"1": "Halo 3 - Xbox 360", "2": "Halo Wars - Xbox 360 (Platinum Hits)", "3": "Super Mario Galaxy - Nintendo Wii",
          "4": "Halo Reach", "5": "Mario Kart 8 - Wii U", "7": "Tetris - Game Boy Advance"}
TRAIN = [Record("a", ("1", "3"), ("4", "5", "7"), "4"), Record("b", ("2", "3"), ("4", "5", "7"), "4")]
TEST = Record("t", ("1", "2"), ("4", "5", "7"), "4")


def test_fields_of_a_hand_written_rationale():
    text = ("#Initial reasoning: platform Wii U in 0/2 (mostly Xbox 360); no shared series; shared words kart; "
            "popularity low.\n#Self-check: popularity alone is weak; 1 of 3 signals match.\n"
            "#Final conclusion and suggestion: match 1.6 above 0.9, I recommend it.\n<answer>Recommend</answer>")
    got = fidelity.fields(text)
    assert got == {"platform": "platform Wii U in 0/2 (mostly Xbox 360)", "series": "no shared series",
                   "words": "shared words kart", "popularity": "popularity low", "platform_name": "Wii U",
                   "platform_count": "0/2", "match": "1.6", "answer": "Recommend"}
    assert fidelity.fields("I like it.") == dict.fromkeys(got)
    assert fidelity.fields("#Initial reasoning: platform unknown; a; b; popularity high.")["platform_name"] == "unknown"


def _teacher_text(index, candidate):
    e = index.evidence(TEST, TEST.history, candidate)
    score = match_score(e)
    return rationale(e, score, THRESHOLD, "Recommend" if score >= THRESHOLD else "Not Recommend"), score


def _logged(index):
    exact, halo = _teacher_text(index, "4")
    wrong_count, kart = _teacher_text(index, "5")
    assert halo >= THRESHOLD > kart          # the rule recommends the positive (its series) and not Mario Kart
    assert "in 0/2" in wrong_count
    return [{"user_id": "t", "candidates": ["4", "5", "7"],
             "rationales": [exact, wrong_count.replace("in 0/2", "in 1/2"), "I like it."]}]


def test_agreement_shares_and_rankings_on_constructed_rationales():
    index = EvidenceIndex.from_split(TITLES, TRAIN)
    got = fidelity.compare([TEST], _logged(index), index, own_scores={"t": [0.1, 0.9, 0.5]})
    # candidate 4: the teacher's own text (every check right); 5: the teacher's text with the count changed
    # (its platform count, platform field and first line wrong); 7: nothing parsed (every check wrong).
    third, two = pytest.approx(1 / 3), pytest.approx(2 / 3)
    assert got["users"] == 1 and got["rationales"] == 3 and got["parsed"] == two
    assert got["agreement"] == {"platform_name": two, "platform_count": third, "platform": third, "series": two,
                                "words": two, "popularity": two, "first_line": third, "match": two, "decision": two,
                                "decision_correct": two}
    # Base rates: the teacher writes three different platforms (unknown, Wii U, GBA), "0/2" twice, and the series
    # only for Halo Reach.
    constant = got["constant_agreement"]
    assert constant["platform_name"] == third and constant["platform_count"] == two and constant["series"] == two
    # The positive (4) is first by the rule and by the written match (7's is lowest, unparsed); the own scores put
    # it third: NDCG@10 = 1 / log2(4).
    assert got["ndcg@10"] == {"teacher_rule": 1.0, "written_match": 1.0, "own_scores": pytest.approx(0.5)}


def test_a_user_outside_the_split_is_a_clear_error():
    index = EvidenceIndex.from_split(TITLES, TRAIN)
    logged = [*_logged(index), {"user_id": "x", "candidates": [], "rationales": []}]
    with pytest.raises(fidelity.DataError, match="^log.jsonl:2: user 'x' is not in the evaluated split"):
        fidelity.compare([TEST], logged, index, source="log.jsonl")
    logged[1] = {"user_id": "t", "candidates": ["5", "4", "7"], "rationales": []}
    with pytest.raises(fidelity.DataError, match="^log.jsonl:2: user 't'.s candidates differ from the benchmark's"):
        fidelity.compare([TEST], logged, index, source="log.jsonl")


def test_the_command_writes_its_tables(tmp_path):
    bench = tmp_path / "run" / "data" / "benchmark"
    bench.mkdir(parents=True)
    write_jsonl(bench / "items.jsonl", [{"item_id": i, "title": t} for i, t in TITLES.items()])
    write_jsonl(bench / "train.jsonl", [r.to_json() for r in TRAIN])
    for split in ("valid", "test"):
        write_jsonl(bench / f"{split}.jsonl", [TEST.to_json()])
    cfg = ExperimentConfig()
    grounded = dataclasses.replace(cfg, teacher=dataclasses.replace(cfg.teacher, kind="grounded"))
    (tmp_path / "run" / "config.json").write_text(json.dumps(to_dict(grounded)))
    scores = tmp_path / "run" / "eval" / "scores"
    scores.mkdir(parents=True)
    write_jsonl(scores / "r2rank.rationales.jsonl", _logged(EvidenceIndex.from_split(TITLES, TRAIN)))
    assert fidelity.main(["--workdir", str(tmp_path / "run"), "--methods", "r2rank"]) == 0
    out = json.loads((tmp_path / "run" / "analyses" / "rationale_fidelity.json").read_text())
    assert out["methods"]["r2rank"]["agreement"]["first_line"] == pytest.approx(1 / 3)
    assert "own_scores" not in out["methods"]["r2rank"]["ndcg@10"]          # no score file in this workdir
    md = (tmp_path / "run" / "analyses" / "rationale_fidelity.md").read_text()
    assert "| r2rank | 1 × 3 | 0.667 |" in md
    (scores / "sft_only.rationales.jsonl").write_text('{"user_id": "t", "candidates": ["4", "5", "7"]}\n')
    with pytest.raises(fidelity.DataError, match=r"sft_only.rationales.jsonl:1: not a rationale-log line \(needs"):
        fidelity.main(["--workdir", str(tmp_path / "run"), "--methods", "sft_only"])
    (scores / "sft_only.rationales.jsonl").unlink()
    with pytest.raises(fidelity.MissingInputError, match="sft_only.rationales.jsonl is missing"):
        fidelity.main(["--workdir", str(tmp_path / "run"), "--methods", "sft_only"])
    # A run trained again without its eval (the study's --retrain_archived) has no log: skipped, and said so.
    assert fidelity.main(["--workdir", str(tmp_path / "run"), "--methods", "r2rank,sft_only", "--skip_missing_log"]) == 0
    out = json.loads((tmp_path / "run" / "analyses" / "rationale_fidelity.json").read_text())
    assert out["methods"] == {} and "sft_only.rationales.jsonl" in out["skipped"]
    assert "r2rank.rationales" not in out["skipped"]
    assert "Skipped: no rationale log in this run" in (tmp_path / "run" / "analyses" / "rationale_fidelity.md").read_text()
    # Another teacher's rationales are not compared with the grounded teacher's text: skipped, and said so.
    scripted = dataclasses.replace(cfg, teacher=dataclasses.replace(cfg.teacher, kind="scripted"))
    (tmp_path / "run" / "config.json").write_text(json.dumps(to_dict(scripted)))
    assert fidelity.main(["--workdir", str(tmp_path / "run"), "--max-users", "3"]) == 0
    out = json.loads((tmp_path / "run" / "analyses" / "rationale_fidelity.json").read_text())
    assert out["methods"] == {} and "teacher is 'scripted'" in out["skipped"]
    assert "Skipped: the run's teacher is 'scripted'" in (tmp_path / "run" / "analyses" / "rationale_fidelity.md").read_text()
