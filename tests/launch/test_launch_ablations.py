"""The LLM evaluation methods and the ablations through the launcher, on configs/debug_cpu.py.

Reuses the session's `all` run (`debug_run`): the verbalizer methods are in its results (checked
against an independent full-sequence forward), an MLP-only run continues from its SFT checkpoint
(LLM bitwise unchanged) and joins a main run's table through `eval.compare`, and compare runs that
do not match fail clearly."""
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from r2rank_jax import ablations, launch
from r2rank_jax.config import apply_overrides, load_config_file
from r2rank_jax.data import prompt_text as pt
from r2rank_jax.eval.compare import CompareError
from r2rank_jax.eval.per_user import METRICS
from r2rank_jax.run import builders as common
from r2rank_jax.run.build import build_model
from r2rank_jax.run.workdir import Workdir

DEBUG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "debug_cpu.py")
pytestmark = pytest.mark.slow  # the session's `all` run (debug_run) takes about a minute


def _copy_run(src, dst, parts):
    dst.mkdir(parents=True)
    shutil.copy(src / "config.json", dst / "config.json")
    for part in parts:
        shutil.copytree(src / part, dst / part)
    return dst


def test_verbalizer_methods_are_scored_without_ties(debug_run):
    results = json.loads((debug_run / "eval" / "results.json").read_text())
    methods = results["methods"]
    assert "zero_shot" not in methods
    for name in ("sft_only", "zero_shot_pointwise"):
        assert all(np.isfinite(methods[name][m]) and 0.0 <= methods[name][m] <= 1.0 for m in METRICS)
        assert methods[name]["ties"]["users_with_ties"] == 0  # the old untrained-head methods tied everywhere
        assert set(results["significance"]["comparisons"][name]) == set(METRICS)
    assert 0.0 <= methods["sft_only"]["answer_tag_rate"] <= 1.0
    assert "| zero_shot_pointwise |" in (debug_run / "eval" / "results.md").read_text()


def test_zero_shot_pointwise_scores_match_a_full_sequence_forward(debug_run):
    """The first test user's scores from the score file vs log-softmax of the base model's logits over
    the whole no_cot prompt + "<answer>" + answer, built and run here without the eval code."""
    cfg = load_config_file(DEBUG)
    wd = Workdir(debug_run)
    tok = common.tokenizer(cfg, wd, "test")
    record = common.source(wd, "test").records[0]
    builder, _ = common.prompts_and_pipeline(cfg, tok, wd, batch_users=1, variant="no_cot")
    prompts = builder.build(record)
    model, _ = build_model(cfg, tok)
    encode = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    tag = encode(pt.ANSWER_OPEN)
    answers = [encode(pt.ANSWER_OPEN + a)[len(tag):] for a in (pt.RECOMMEND, pt.NOT_RECOMMEND)]
    seqs = [prompts.prompt_ids(k) + tag + a for k in range(len(record.candidates)) for a in answers]
    width = max(map(len, seqs))
    tokens = np.zeros((len(seqs), width), np.int32)
    for i, s in enumerate(seqs):
        tokens[i, :len(s)] = s
    positions = np.where(np.arange(width)[None] < np.array([len(s) for s in seqs])[:, None], np.arange(width), -1)
    logits = np.asarray(nnx.jit(lambda m, t, p: m(t, p, logits_at="all").logits)(model, tokens, positions), np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    sums = [sum(logp[i, len(s) - len(a) - 1 + j, t] for j, t in enumerate(a))
            for i, (s, a) in enumerate(zip(seqs, answers * len(record.candidates)))]
    want = np.array(sums[0::2]) - np.array(sums[1::2])
    row = json.loads((debug_run / "eval" / "scores" / "zero_shot_pointwise.jsonl").read_text().splitlines()[0])
    assert row["user_id"] == record.user_id and row["candidates"] == list(record.candidates)
    np.testing.assert_allclose(row["scores"], want, atol=1e-4)
    assert np.ptp(want) > 1e-3  # distinct scores, not ties


def test_no_cot_sft_examples_are_decision_only(debug_run):
    from r2rank_jax.methods.r2rank.sft import decision_only
    from r2rank_jax.train import sft_data

    cfg = apply_overrides(load_config_file(DEBUG), {"data.prompt_variant": "no_cot"})
    wd = Workdir(debug_run)
    tok = common.tokenizer(cfg, wd, "test")
    examples = sft_data.load_corpus(wd.teacher / "corpus.jsonl", tok)[:12]
    assert {e.label for e in examples} == {0, 1}
    items = common.source(wd, "train").items
    for ex, new in zip(examples, decision_only(examples, cfg, tok, wd)):
        prompt = tok.decode(new.prompt_ids, skip_special_tokens=False)
        assert "Do not explain" in prompt and "#Initial reasoning" not in prompt
        assert pt.clean_text(items[ex.candidate]["title"])[:20] in prompt
        decision = pt.RECOMMEND if ex.label else pt.NOT_RECOMMEND
        assert new.response_ids[-1] == tok.eos_token_id
        assert tok.decode(new.response_ids[:-1], skip_special_tokens=False) == f"<answer>{decision}</answer>"


@pytest.fixture(scope="module")
def mlp_only_runs(debug_run, tmp_path_factory):
    """(main workdir, MLP-only workdir): the paper's MLP-only (no SFT, base model frozen; rl + eval stages on
    debug_run's data); the main run is a copy of debug_run's RL checkpoint, evaluated with the ablation in
    its table."""
    root = tmp_path_factory.mktemp("ablation")
    abl = _copy_run(debug_run, root / "mlp_only", ("data",))
    for stage in ("rl", "eval"):
        assert launch.main([f"--config={DEBUG}", *ablations.overrides("mlp_only"), f"--workdir={abl}", stage]) == 0
    main = _copy_run(debug_run, root / "main", ("data", "rl"))
    assert launch.main([f"--config={DEBUG}", "--config.eval.methods=r2rank", "--config.eval.baselines=",
                        f"--config.eval.compare=mlp_only={abl}", f"--workdir={main}", "eval"]) == 0
    return main, abl


def test_mlp_only_leaves_the_base_llm_bitwise_unchanged(mlp_only_runs):
    _, abl = mlp_only_runs
    assert ablations.ABLATIONS["mlp_only"] == ("sft.steps=0", "rl.freeze_llm=true")      # Table 3: base model
    cfg = load_config_file(DEBUG)
    tok = common.tokenizer(cfg, Workdir(abl), "test")
    (sft_llm, sft_head), (rl_llm, rl_head) = build_model(cfg, tok), build_model(cfg, tok)   # the base model
    assert not (abl / "sft" / "checkpoints").exists()
    assert common.restore_params(rl_llm, rl_head, abl / "rl") == 2
    sft_leaves, rl_leaves = jax_leaves(sft_llm), jax_leaves(rl_llm)
    assert len(sft_leaves) == len(rl_leaves) > 0
    for a, b in zip(sft_leaves, rl_leaves):
        np.testing.assert_array_equal(a, b)
    assert any(np.any(a != b) for a, b in zip(jax_leaves(sft_head), jax_leaves(rl_head)))  # the head trained
    rows = [json.loads(line) for line in (abl / "metrics.jsonl").read_text().splitlines()]
    logged = [r["grad_norm_llm"] for r in rows if r["stage"] == "rl"]
    assert logged and all(g == 0.0 for g in logged)


def jax_leaves(module):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(module))]


def test_ablation_joins_the_main_table(mlp_only_runs):
    main, abl = mlp_only_runs
    results = json.loads((main / "eval" / "results.json").read_text())
    own = json.loads((abl / "eval" / "results.json").read_text())["methods"]["r2rank"]
    # zero_shot_listwise always runs in the eval stage
    assert [m for m in results["methods"] if m != "zero_shot_listwise"] == ["r2rank", "mlp_only"]
    for m in METRICS:
        assert results["methods"]["mlp_only"][m] == pytest.approx(own[m])
        assert np.isfinite(results["methods"]["mlp_only"][m])
    assert set(results["significance"]["comparisons"]["mlp_only"]) == set(METRICS)
    assert results["compared_runs"] == {"mlp_only": str(abl)}
    assert "| mlp_only |" in (main / "eval" / "results.md").read_text()


def test_compare_run_that_does_not_match_is_an_error(mlp_only_runs, tmp_path):
    main, abl = mlp_only_runs

    def eval_with(other):
        launch.main([f"--config={DEBUG}", "--config.eval.methods=r2rank", "--config.eval.baselines=",
                     f"--config.eval.compare=bad={other}", f"--workdir={main}", "eval"])

    bad = tmp_path / "bad"
    (bad / "eval" / "scores").mkdir(parents=True)
    (bad / "data" / "benchmark").mkdir(parents=True)
    shutil.copy(abl / "data" / "benchmark" / "manifest.json", bad / "data" / "benchmark" / "manifest.json")
    rows = [json.loads(line) for line in (abl / "eval" / "scores" / "r2rank.jsonl").read_text().splitlines()]
    rows[3]["candidates"] = rows[3]["candidates"][1:] + rows[3]["candidates"][:1]
    (bad / "eval" / "scores" / "r2rank.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CompareError, match=rf"eval.compare bad=.*r2rank.jsonl:4: user '{rows[3]['user_id']}': "
                                           "candidates differ"):
        eval_with(bad)
    (bad / "eval" / "scores" / "r2rank.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:5]))
    with pytest.raises(CompareError, match="scores 5 users, this run evaluates 8"):
        eval_with(bad)
    manifest = json.loads((bad / "data" / "benchmark" / "manifest.json").read_text())
    (bad / "data" / "benchmark" / "manifest.json").write_text(json.dumps(manifest | {"content_hash": "0" * 64}))
    with pytest.raises(CompareError, match="benchmark .*differs from this run's"):
        eval_with(bad)
    with pytest.raises(CompareError, match="does not exist"):
        eval_with(tmp_path / "nowhere")
