"""The model behind the server: chat completions and R2Rank ranking, one generation at a time."""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from r2rank_jax.data import prompt_text as pt
from r2rank_jax.data.answers import parse_decision
from r2rank_jax.models.batching import left_pad
from r2rank_jax.models.head import ScoringHead, score_sequences
from r2rank_jax.serve.schema import BadRequest, ChatRequest, RankRequest
from r2rank_jax.teacher.generator import Generation, GenerationOptions, Generator

STOP = pt.ANSWER_CLOSE  # a rationale ends at its decision tag, as in RL rollouts
UNTRAINED_NOTE = ("no trained scoring head is loaded: a fresh head scores every rationale 0, so the ranking is the "
                  "input order")


def _chat_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def _pow2(n: int) -> int:
    return 1 << (max(n, 1) - 1).bit_length()


@nnx.jit
def _head_scores(model, head, tokens, positions):
    """Scores `[B]` at each row's last real token (shapes are bucketed by the caller)."""
    return score_sequences(head, model(tokens, positions).hidden, positions)


class Engine:
    """Holds the model, its tokenizer, a `Generator` and the scoring head; a lock serializes requests."""

    def __init__(self, model: Any, tokenizer: Any, generator: Generator, *, name: str = "r2rank", head: Any = None,
                 max_tokens_limit: int = 1024, default_max_tokens: int = 256):
        self.model, self.tokenizer, self.generator, self.name = model, tokenizer, generator, name
        self.head_trained = head is not None
        self.head = head if head is not None else ScoringHead(model.config.hidden_size, rngs=nnx.Rngs(0))
        self.max_tokens_limit = max_tokens_limit
        self.default_max_tokens = default_max_tokens
        self.lock = threading.Lock()
        self.created = int(time.time())

    def _check_length(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, param: str) -> None:
        limit_fn = getattr(self.generator, "max_prompt_tokens", None)
        if limit_fn is None:
            return
        limit = limit_fn(max_new_tokens)
        longest = max(len(p) for p in prompts)
        if longest > limit:
            raise BadRequest(param, f"the prompt has {longest} tokens; at most {limit} fit with {max_new_tokens} "
                                    "new tokens")

    # ------------------------------------------------------------------------------ chat

    def chat(self, req: ChatRequest) -> dict[str, Any]:
        ids = _chat_ids(self.tokenizer, req.messages)
        self._check_length([ids], req.max_tokens, "messages")
        temperature = req.temperature if self.generator.supports_sampling else 0.0
        options = GenerationOptions(max_new_tokens=req.max_tokens, temperature=temperature, top_p=req.top_p,
                                    stop=req.stop, seed=req.seed)
        with self.lock:
            gen = self.generator.generate([ids], options)[0]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                         "finish_reason": gen.finish_reason}],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": len(gen.token_ids),
                      "total_tokens": len(ids) + len(gen.token_ids)},
        }

    # ------------------------------------------------------------------------------ rank

    def rank(self, req: RankRequest) -> dict[str, Any]:
        """K self-reflective rationales (greedy, each ending at ``</answer>`` or max_new_tokens), each scored by
        the head on the decoder's final hidden state at its last generated token."""
        profile = pt.clean_text(req.profile) if req.profile else None
        history = [pt.clean_text(h) for h in req.history]
        prompts = [_chat_ids(self.tokenizer, [{"role": "user", "content":
                                               pt.pointwise_message("cot", profile, history, pt.clean_text(c))}])
                   for c in req.candidates]
        self._check_length(prompts, req.max_new_tokens, "history")
        with self.lock:
            gens = self.generator.generate(prompts, GenerationOptions(max_new_tokens=req.max_new_tokens, stop=(STOP,)))
            if all(g.hidden is not None for g in gens):  # the sampler's hidden state at the last token
                scores = np.asarray(self.head(jnp.asarray(np.stack([g.hidden for g in gens]))))
            else:
                scores = self.score(prompts, gens)
        # The rationale keeps its closing tag (chat replies drop stop strings, OpenAI style).
        rationales = [self.tokenizer.decode(g.token_ids, skip_special_tokens=True) for g in gens]
        order = sorted(range(len(scores)), key=lambda k: (-scores[k], k))
        ranking = [{"rank": r + 1, "index": k, "candidate": req.candidates[k], "score": float(scores[k]),
                    "decision": parse_decision(rationales[k]), "rationale": rationales[k],
                    "finish_reason": gens[k].finish_reason} for r, k in enumerate(order)]
        out = {
            "id": f"rank-{uuid.uuid4().hex[:24]}",
            "object": "ranking",
            "created": int(time.time()),
            "model": self.name,
            "head": "trained" if self.head_trained else "untrained",
            "ranking": ranking,
            "usage": {"prompt_tokens": sum(map(len, prompts)),
                      "completion_tokens": sum(len(g.token_ids) for g in gens)},
        }
        if not self.head_trained:
            out["note"] = UNTRAINED_NOTE
        return out

    def score(self, prompts: Sequence[Sequence[int]], gens: Sequence[Generation]) -> np.ndarray:
        """Head scores `[K]` at each sequence's last token (the last generated one), by a forward pass
        over prompt + generation (for generators that do not return hidden states)."""
        seqs = [list(p) + list(g.token_ids) for p, g in zip(prompts, gens)]
        rows = _pow2(len(seqs))
        length = max(64, _pow2(max(map(len, seqs))))
        tokens, positions = left_pad(seqs + [seqs[0]] * (rows - len(seqs)), length=length)
        return np.asarray(_head_scores(self.model, self.head, jnp.asarray(tokens), jnp.asarray(positions)))[:len(seqs)]


