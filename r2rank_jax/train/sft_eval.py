"""Held-out evaluation of SFT: response loss and teacher-forced decision accuracy.

Decision accuracy of one held-out (user, candidate) example: the context is the prompt plus the
teacher's rationale up to and including its last ``<answer>``; the model scores the two answer
continuations ``Recommend</answer>`` and ``Not Recommend</answer>`` by their summed log-probs, and
the prediction is correct when the continuation of the label scores higher. The context text is
the decoded response ids cut at ``<answer>`` and re-tokenized (exact for tokenizers whose
``decode(encode(x)) == x`` and whose ``<answer>`` is a token boundary, like the synthetic world's).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jax.sharding import Mesh

from r2rank_jax import distributed
from r2rank_jax.data.prompt_text import ANSWER_CLOSE, ANSWER_OPEN, NOT_RECOMMEND, RECOMMEND
from r2rank_jax.train import sft_data
from r2rank_jax.train.sft import make_sequence_logprobs, put_batch
from r2rank_jax.train.sft_data import SFTExample
from r2rank_jax.train.state import Static, TrainState


def _round_up(n: int, m: int = 8) -> int:
    return -(-n // m) * m


def decision_pairs(examples: Sequence[SFTExample], tokenizer: Any) -> list[SFTExample]:
    """Two examples per input, (Recommend, Not Recommend), whose "prompt" is the prompt + rationale up
    to ``<answer>`` and whose "response" is the answer continuation; ``label`` 1 marks the correct one."""
    encode = lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    continuations = {d: encode(f"{d}{ANSWER_CLOSE}") for d in (RECOMMEND, NOT_RECOMMEND)}
    eos = tokenizer.eos_token_id
    out = []
    for ex in examples:
        ids = list(ex.response_ids[:-1] if ex.response_ids and ex.response_ids[-1] == eos else ex.response_ids)
        text = tokenizer.decode(ids, skip_special_tokens=False)
        cut = text.rfind(ANSWER_OPEN)
        if cut < 0:
            raise ValueError(f"{ex.where}: the response has no {ANSWER_OPEN}")
        context = tuple(ex.prompt_ids) + tuple(encode(text[:cut + len(ANSWER_OPEN)]))
        for decision, cont in continuations.items():
            correct = int((decision == RECOMMEND) == (ex.label == 1))
            out.append(SFTExample(ex.user_id, ex.candidate, correct, context, tuple(cont), ex.where))
    return out


def _batches(examples: Sequence[SFTExample], batch_size: int, prompt_buckets, response_buckets, pad_id: int,
             shared_prefix: int = 0):
    collate = sft_data.Collate(batch_size, prompt_buckets, response_buckets, pad_id, shared_prefix)
    for i in range(0, len(examples), batch_size):
        yield collate(examples[i:i + batch_size])


def make_sft_eval(static: Static, examples: Sequence[SFTExample], tokenizer: Any, data_config: sft_data.SFTDataConfig,
                  batch_size: int = 8, mesh: Mesh | None = None, logit_chunk: int = 64) -> Callable[[TrainState], dict[str, float]]:
    """``eval_fn(state) -> {"eval_loss", "eval_tokens", "decision_acc", "decision_margin"}`` on ``examples``
    (held-out SFT examples; loss = mean response-token NLL, margin = mean log-prob of the correct answer
    minus the wrong one). ``batch_size`` must divide over the mesh's (data, fsdp) axes."""
    examples = sft_data.fit_examples(examples, data_config)
    pad_id = tokenizer.pad_token_id
    shared = data_config.shared_prefix       # the decision pairs' prompts (prompt + rationale) begin with it too
    sft_data.check_shared_prefix(examples, shared)
    seq_logprobs = make_sequence_logprobs(static, logit_chunk, mesh, shared)
    pairs = decision_pairs(examples, tokenizer)
    pair_prompt_buckets = tuple(sorted({_round_up(max(len(p.prompt_ids) for p in pairs))}))
    pair_response_buckets = (_round_up(max(len(p.response_ids) for p in pairs)),)

    def run(llm, exs, p_buckets, r_buckets) -> tuple[np.ndarray, np.ndarray]:
        sums, counts = [], []
        for batch in _batches(exs, batch_size, p_buckets, r_buckets, pad_id, shared):
            s, c = seq_logprobs(llm, put_batch(batch, mesh, host_rows=False))   # every host: the whole batch
            n = int(batch["example_mask"].sum())
            sums.append(distributed.to_host(s)[:n])
            counts.append(distributed.to_host(c)[:n])
        return np.concatenate(sums), np.concatenate(counts)

    def eval_fn(state: TrainState) -> dict[str, float]:
        s, c = run(state.llm, examples, data_config.prompt_buckets, data_config.response_buckets)
        pair_s, _ = run(state.llm, pairs, pair_prompt_buckets, pair_response_buckets)
        rec, not_rec = pair_s[0::2], pair_s[1::2]          # pairs alternate (Recommend, Not Recommend)
        labels = np.array([ex.label for ex in examples])
        correct = np.where(labels == 1, rec - not_rec, not_rec - rec)
        return {"eval_loss": float(-s.sum() / max(c.sum(), 1)), "eval_tokens": int(c.sum()),
                "decision_acc": float(np.mean(correct > 0)), "decision_margin": float(np.mean(correct))}

    return eval_fn
