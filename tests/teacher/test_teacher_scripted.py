"""Scripted teacher on the synthetic world: corpus, filter, stats, resume."""
import json

from r2rank_jax.data.answers import parse_decision
from r2rank_jax.data.prompt_text import NOT_RECOMMEND, RECOMMEND
from r2rank_jax.data.synthetic import load_item_attributes
from r2rank_jax.teacher import ledger
from r2rank_jax.teacher.scripted import ScriptedTeacher
from r2rank_jax.teacher.synthesize import SynthesisConfig, main, synthesize


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _teacher(tiny_world, noise, seed=0):
    return ScriptedTeacher(load_item_attributes(tiny_world[0]), noise=noise, seed=seed)


def test_corpus_is_filtered_and_complete(tiny_world, builder, train_records, tmp_path):
    cfg = SynthesisConfig(negatives_per_user=2, max_users=30)
    stats = synthesize(_teacher(tiny_world, noise=0.3), builder, train_records, tmp_path, cfg)
    corpus = _lines(tmp_path / ledger.CORPUS)
    done = _lines(tmp_path / ledger.LEDGER)
    assert len(done) == 90 and stats["requests"] == 90 and stats["answered"] == 90
    assert len(corpus) == stats["accepted"] == sum(d["outcome"] == "accepted" for d in done)
    assert 0.3 < stats["acceptance_rate"] < 1.0
    for line in corpus:
        assert parse_decision(line["response"]) == (RECOMMEND if line["label"] else NOT_RECOMMEND)
        for section in ("#Initial reasoning:", "#Self-check:", "#Final conclusion and suggestion:"):
            assert section in line["response"]
        assert line["prompt"].endswith(line["user_message"] + "<|im_end|>\n<|im_start|>assistant\n")
        assert line["teacher"] == "scripted(noise=0.3)" and line["attempt"] == 1
    per = stats["per_label"]
    assert per["positive"]["pairs"] == 30 and per["negative"]["pairs"] == 60
    assert per["positive"]["accepted"] + per["negative"]["accepted"] == stats["accepted"]
    assert stats["failures_by_kind"] == {"wrong_decision": 90 - stats["accepted"]}
    assert json.loads((tmp_path / ledger.STATS).read_text())["accepted"] == stats["accepted"]
    assert all(d["response_tail"].endswith("</answer>") for d in done if d["outcome"] == "rejected")
    assert all("response_tail" not in d for d in done if d["outcome"] == "accepted")


def test_noise_free_beats_noisy(tiny_world, builder, train_records, tmp_path):
    cfg = SynthesisConfig(negatives_per_user=2, max_users=30)
    clean = synthesize(_teacher(tiny_world, 0.0), builder, train_records, tmp_path / "a", cfg)
    noisy = synthesize(_teacher(tiny_world, 0.5), builder, train_records, tmp_path / "b", cfg)
    assert clean["acceptance_rate"] > noisy["acceptance_rate"]


def test_corpus_loads_in_the_sft_reader(tiny_world, builder, train_records, tmp_path):
    from r2rank_jax.train.sft_data import load_corpus

    synthesize(_teacher(tiny_world, 0.2), builder, train_records, tmp_path, SynthesisConfig(max_users=5))
    examples = load_corpus(tmp_path / ledger.CORPUS, builder.tokenizer)
    assert examples and all(e.response_ids for e in examples)
    # The prompt tokenizes exactly like the pipeline's pointwise prompt for the same pair.
    ex = examples[0]
    record = next(r for r in train_records if r.user_id == ex.user_id)
    prompts = builder.build(record)
    assert list(ex.prompt_ids) == prompts.prompt_ids(record.candidates.index(ex.candidate))


def test_resume_skips_done_pairs(tiny_world, builder, train_records, tmp_path):
    cfg = SynthesisConfig(negatives_per_user=1, max_users=10)
    first = synthesize(_teacher(tiny_world, 0.3), builder, train_records, tmp_path, cfg)
    corpus = (tmp_path / ledger.CORPUS).read_bytes()
    again = synthesize(_teacher(tiny_world, 0.3), builder, train_records, tmp_path, cfg)
    assert again["run"]["requests"] == 0 and again["run"]["skipped"] == 20
    assert (tmp_path / ledger.CORPUS).read_bytes() == corpus
    assert again["accepted"] == first["accepted"]
    # More users: only the new users' pairs are asked.
    more = synthesize(_teacher(tiny_world, 0.3), builder, train_records, tmp_path,
                      SynthesisConfig(negatives_per_user=1, max_users=15))
    assert more["run"]["requests"] == 10 and more["responses"] == 30


def test_resume_after_a_torn_write(tiny_world, builder, train_records, tmp_path):
    cfg = SynthesisConfig(negatives_per_user=1, max_users=4)
    synthesize(_teacher(tiny_world, 0.0), builder, train_records, tmp_path, cfg)
    done = (tmp_path / ledger.LEDGER).read_text().splitlines(keepends=True)
    corpus = (tmp_path / ledger.CORPUS).read_text().splitlines(keepends=True)
    # Crash simulation: the last ledger line torn mid-write, the one before lost entirely.
    (tmp_path / ledger.LEDGER).write_text("".join(done[:-2]) + done[-1][:15])
    again = synthesize(_teacher(tiny_world, 0.0), builder, train_records, tmp_path, cfg)
    accepted_lost = sum(json.loads(d)["outcome"] == "accepted" for d in done[-2:])
    assert again["run"]["requests"] == 2 - accepted_lost  # accepted pairs are known from the corpus
    lines = _lines(tmp_path / ledger.CORPUS)
    assert len(lines) == len(corpus) and len({(x["user_id"], x["candidate"]) for x in lines}) == len(lines)
    _lines(tmp_path / ledger.LEDGER)  # valid JSONL again


def test_max_attempts_reasks_rejected_pairs(tiny_world, builder, train_records, tmp_path):
    cfg = SynthesisConfig(negatives_per_user=1, max_users=20, max_attempts=4)
    stats = synthesize(_teacher(tiny_world, 0.5), builder, train_records, tmp_path, cfg)
    corpus = _lines(tmp_path / ledger.CORPUS)
    assert max(x["attempt"] for x in corpus) > 1
    assert stats["requests"] > 40
    assert stats["per_label"]["positive"]["pair_acceptance_rate"] > stats["per_label"]["positive"]["acceptance_rate"]
    again = synthesize(_teacher(tiny_world, 0.5), builder, train_records, tmp_path, cfg)
    assert again["run"]["requests"] == 0


def test_cli_scripted(tiny_world, tmp_path, capsys):
    bench, tok = tiny_world
    args = ["--benchmark", str(bench), "--out", str(tmp_path), "--teacher", "scripted", "--tokenizer", str(tok),
            "--max_users", "6", "--negatives_per_user", "2", "--noise", "0.2"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["requests"] == 18 and summary["run"]["requests"] == 18
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run"]["requests"] == 0


def test_concise_style_keeps_the_decisions_and_the_evidence(tiny_world, builder, train_records, tmp_path):
    attributes = load_item_attributes(tiny_world[0])
    full = ScriptedTeacher(attributes, noise=0.3, seed=1)
    concise = ScriptedTeacher(attributes, noise=0.3, seed=1, style="concise")
    cfg = SynthesisConfig(negatives_per_user=2, max_users=20)
    a = synthesize(full, builder, train_records, tmp_path / "full", cfg)
    b = synthesize(concise, builder, train_records, tmp_path / "concise", cfg)
    assert a["accepted"] == b["accepted"]          # same noise draws, same decisions
    full_lines, short_lines = _lines(tmp_path / "full" / ledger.CORPUS), _lines(tmp_path / "concise" / ledger.CORPUS)
    for x, y in zip(full_lines, short_lines):
        assert (x["candidate"], parse_decision(x["response"])) == (y["candidate"], parse_decision(y["response"]))
        for section in ("#Initial reasoning:", "#Self-check:", "#Final conclusion and suggestion:"):
            assert section in y["response"]
        cand = attributes[y["candidate"]]
        for attr in ("genre", "platform", "brand"):
            assert f"{attr} {cand[attr]} " in y["response"]
        assert len(builder.tokenizer(y["response"])["input_ids"]) < len(builder.tokenizer(x["response"])["input_ids"]) / 2
    assert y["teacher"] == "scripted(noise=0.3,style=concise)"
    try:
        ScriptedTeacher(attributes, style="terse")
    except ValueError as e:
        assert "style" in str(e)
    else:
        raise AssertionError("an unknown style must be an error")


def test_graded_style_states_the_floored_match_score(tiny_world, builder, train_records, tmp_path):
    import math
    import re

    from r2rank_jax.teacher.base import Pair
    from r2rank_jax.teacher.scripted import MAX_LEVEL

    attributes = load_item_attributes(tiny_world[0])
    concise = ScriptedTeacher(attributes, noise=0.3, seed=1, style="concise")
    graded = ScriptedTeacher(attributes, noise=0.3, seed=1, style="graded")
    cfg = SynthesisConfig(negatives_per_user=2, max_users=20)
    a = synthesize(concise, builder, train_records, tmp_path / "concise", cfg)
    b = synthesize(graded, builder, train_records, tmp_path / "graded", cfg)
    assert a["accepted"] == b["accepted"]          # same noise draws, same decisions
    records = {r.user_id: r for r in train_records}
    levels = set()
    for x, y in zip(_lines(tmp_path / "concise" / ledger.CORPUS), _lines(tmp_path / "graded" / ledger.CORPUS)):
        assert y["response"].splitlines()[0] == x["response"].splitlines()[0]      # the same evidence line
        record = records[y["user_id"]]
        shown = builder.build(record).history          # the history the prompt shows (after the budget cut)
        score = graded.match_score(Pair(record, y["candidate"], y["label"], shown, y["user_message"], y["prompt"]))
        level = min(math.floor(score), MAX_LEVEL)
        check = re.search(r"match level (\d) of 7", y["response"])
        final = re.search(r"#Final conclusion and suggestion: level (\d), (I (?:do not )?recommend it)\.", y["response"])
        assert check and final and int(check.group(1)) == int(final.group(1)) == level
        assert final.group(2) == ("I recommend it" if y["label"] else "I do not recommend it")
        levels.add(level)
    assert len(levels) >= 3 and y["teacher"] == "scripted(noise=0.3,style=graded)"


def _stepwise_pairs():
    from r2rank_jax.data.benchmark import Record
    from r2rank_jax.teacher.base import Pair

    attributes = {
        "c": {"genre": "Racing", "platform": "PS5", "brand": "Vortex Games", "edition": "Standard"},
        "d": {"genre": "Horror", "platform": "PC", "brand": "Red Maple", "edition": "Deluxe"},
        "h1": {"genre": "Racing", "platform": "PS4", "brand": "Vortex Games", "edition": "Standard"},
        "h2": {"genre": "Puzzle", "platform": "PS5", "brand": "Red Maple", "edition": "Standard"},
        "h3": {"genre": "Racing", "platform": "PS5", "brand": "Pixel Harbor", "edition": "Gold Edition"},
    }
    history = ("h1", "h2", "h3")
    with_profile = Record("u1", history, ("c", "d"), "c", "age_group: 18-24; favorite_platform: PS5")
    without = Record("u2", history, ("c", "d"), "c", None)
    return attributes, Pair(with_profile, "c", 1, history, "", ""), Pair(without, "d", 0, history, "", "")


def test_stepwise_style_walks_the_history_item_by_item():
    attributes, recommended, rejected = _stepwise_pairs()
    teacher = ScriptedTeacher(attributes, noise=0.0, style="stepwise")
    # score 2/3 ln 25 + 2/3 ln 12 + 1/3 ln 4 + 0.5 (favorite platform) = 4.76: level 4, clear, recommend
    assert teacher.reason(recommended, 1) == (
        "#Initial reasoning: candidate Racing PS5 Vortex Games.\n"
        "1: Racing same PS4 no Vortex Games same\n"
        "2: Puzzle no PS5 same Red Maple no\n"
        "3: Racing same PS5 same Pixel Harbor no\n"
        "genre 2/3, platform 2/3, brand 1/3, favorite platform matches.\n"
        "#Self-check: the evidence is clear, match level 4 of 7.\n"
        "#Final conclusion and suggestion: level 4, I recommend it.\n"
        "<answer>Recommend</answer>")
    # score 1/3 ln 4 = 0.46: level 0, clear (0.84 below the threshold), not recommended; no profile line
    assert teacher.reason(rejected, 1) == (
        "#Initial reasoning: candidate Horror PC Red Maple.\n"
        "1: Racing no PS4 no Vortex Games no\n"
        "2: Puzzle no PS5 no Red Maple same\n"
        "3: Racing no PS5 no Pixel Harbor no\n"
        "genre 0/3, platform 0/3, brand 1/3.\n"
        "#Self-check: the evidence is clear, match level 0 of 7.\n"
        "#Final conclusion and suggestion: level 0, I do not recommend it.\n"
        "<answer>Not Recommend</answer>")
    assert teacher.name == "scripted(noise=0,style=stepwise)"


def test_stepwise_style_agrees_with_graded(tiny_world, builder, train_records, tmp_path):
    import re

    attributes = load_item_attributes(tiny_world[0])
    graded = ScriptedTeacher(attributes, noise=0.3, seed=1, style="graded")
    stepwise = ScriptedTeacher(attributes, noise=0.3, seed=1, style="stepwise")
    cfg = SynthesisConfig(negatives_per_user=2, max_users=20)
    a = synthesize(graded, builder, train_records, tmp_path / "graded", cfg)
    b = synthesize(stepwise, builder, train_records, tmp_path / "stepwise", cfg)
    assert a["accepted"] == b["accepted"]          # same noise draws, same decisions
    counts = r"genre (?:\S+ )*?(\d+)/(\d+), platform (?:\S+ )*?(\d+)/\d+, brand (?:\S+ )*?(\d+)/\d+"
    for x, y in zip(_lines(tmp_path / "graded" / ledger.CORPUS), _lines(tmp_path / "stepwise" / ledger.CORPUS)):
        assert (x["candidate"], parse_decision(x["response"])) == (y["candidate"], parse_decision(y["response"]))
        # the same counts, level and decision: the tail from the self-check on is the graded style's
        assert re.search(counts, x["response"]).groups() == re.search(counts, y["response"]).groups()
        assert y["response"][y["response"].index("#Self-check:"):] == x["response"][x["response"].index("#Self-check:"):]
        lines = y["response"].splitlines()
        n = int(re.search(counts, y["response"]).group(2))
        assert [line.split(":")[0] for line in lines[1:1 + n]] == [str(i) for i in range(1, n + 1)]
        k = re.search(counts, y["response"]).groups()      # every "same" is one matching attribute
        assert sum(line.split().count("same") for line in lines[1:1 + n]) == int(k[0]) + int(k[2]) + int(k[3])
    assert y["teacher"] == "scripted(noise=0.3,style=stepwise)"


def test_tally_style_keeps_running_counts_per_attribute():
    attributes, recommended, rejected = _stepwise_pairs()
    teacher = ScriptedTeacher(attributes, noise=0.0, style="tally")
    # the same score, level and decision as the stepwise test above; the history walked once per attribute
    assert teacher.reason(recommended, 1) == (
        "#Initial reasoning:\n"
        "genre Racing: Racing same 1, Puzzle no 1, Racing same 2.\n"
        "platform PS5: PS4 no 0, PS5 same 1, PS5 same 2.\n"
        "brand Vortex Games: Vortex Games same 1, Red Maple no 1, Pixel Harbor no 1.\n"
        "genre 2/3, platform 2/3, brand 1/3, favorite platform matches.\n"
        "#Self-check: the evidence is clear, match level 4 of 7.\n"
        "#Final conclusion and suggestion: level 4, I recommend it.\n"
        "<answer>Recommend</answer>")
    assert teacher.reason(rejected, 1).splitlines()[1:5] == [
        "genre Horror: Racing no 0, Puzzle no 0, Racing no 0.",
        "platform PC: PS4 no 0, PS5 no 0, PS5 no 0.",
        "brand Red Maple: Vortex Games no 0, Red Maple same 1, Pixel Harbor no 1.",
        "genre 0/3, platform 0/3, brand 1/3."]
    assert teacher.name == "scripted(noise=0,style=tally)"
