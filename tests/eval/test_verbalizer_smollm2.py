"""SmolLM2-135M-Instruct on real R2Rank prompts: the SFT-only answer read from the rationale decode's
cache equals a second prefill of prompt + rationale (`AnswerScorer.logprobs_shared`), for rationales
cut inside, taken whole with the tag appended, and through the verbalizer benchmark's entry point."""
import json
import re

import jax
import numpy as np
import pytest

from r2rank_jax.eval import verbalizer as vb
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax.sampling.sampler import Sampler, SamplerConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    from r2rank_jax.models.gguf import load_gguf, load_gguf_tokenizer

    return load_gguf(smollm2_path), load_gguf_tokenizer(smollm2_path)


def test_the_cache_read_equals_a_second_prefill_on_real_rationales(smollm2, shared_data_dir):
    from r2rank_jax.bench.rollout import games_prompts

    model, tok = smollm2
    (prefix, suffixes), = games_prompts(tok, shared_data_dir / "amazon18_video_games", users=1, k=4, history=20,
                                        seed=0)
    sampler = Sampler(model, SamplerConfig(max_new_tokens=16, eos_ids=(tok.eos_token_id,), pad_id=tok.pad_token_id))
    decoded = sampler.generate_shared([prefix], [suffixes], SamplingParams.make(4, temperature=0.0),
                                      jax.random.key(0), keep_cache=True)
    ids, valid = np.asarray(decoded.output.ids), np.asarray(decoded.output.valid)
    gen = [ids[b][valid[b]].tolist() for b in range(4)]
    assert min(map(len, gen)) > 8
    tag = tok("<answer>", add_special_tokens=False)["input_ids"]
    contexts = [vb.rationale_context(gen[0], tok),  # the whole rationale, the tag appended
                gen[1][:5] + tag,                   # cut after 5 tokens: the 11 after must not be seen
                gen[2][:1] + tag,
                gen[3] + tag]
    scorer = vb.decision_scorer(model, tok, row_buckets=(64, 128))
    got = vb.decision_scores(scorer.logprobs_after_decode(decoded, contexts))
    want = vb.decision_scores(scorer.logprobs_shared([prefix], [[s + c for s, c in zip(suffixes, contexts)]]))
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)
    assert np.ptp(want) > 0.05   # the rows differ, so a row read at another row's context would show


def test_verbalizer_bench_smoke(tmp_path, capsys, shared_data_dir):
    from r2rank_jax.bench import verbalizer

    out = tmp_path / "report.json"
    assert verbalizer.main(["--data_dir", str(shared_data_dir / "amazon18_video_games"), "--users", "1", "--users_per_batch", "1", "--k", "3",
                            "--new_tokens", "6", "--repeats", "1", "--out", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"verbalizer read s/batch: prefill=\d+\.\d\d cache=\d+\.\d\d ratio=\d+\.\d\d "
                        r"decode=\d+\.\d\d", last), last
    report = json.loads(out.read_text())
    assert report["max_abs_decision_score_difference"] < 1e-3
