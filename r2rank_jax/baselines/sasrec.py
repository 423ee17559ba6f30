"""SASRec (Kang & McAuley 2018): a causal self-attentive model of the next item.

Item + learned positional embeddings, 2 causal pre-LN transformer blocks (hidden 64, 1 head,
dropout 0.2), max length 20 (= the benchmark's history length). Training sequences are the train
users' ``history + [positive]``: input = all but the last item, target at every position = the next
item. Loss (``--loss``): ``bce`` (the paper's: binary cross-entropy on the true next item and one
uniformly sampled negative per position; default) or ``ce`` (softmax over all items). Adam, lr 1e-3.
A candidate's score is the dot product of the last hidden state of the user's history with the
candidate's (shared) item embedding.

    python -m r2rank_jax.baselines.sasrec --benchmark DIR --out PATH.jsonl [--split test] [--seed 0]
        [--epochs 5] [--batch_size 128] [--loss bce|ce] [--max_len 20] [--max_sequences_per_epoch 0]
"""
from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from r2rank_jax.baselines import common
from r2rank_jax.baselines.training import FitConfig, batched_apply, fit
from r2rank_jax.baselines.transformer import SequenceEncoder
from r2rank_jax.data.benchmark import Record


@dataclasses.dataclass(frozen=True)
class SASRecConfig:
    max_len: int = 20
    dim: int = 64
    heads: int = 1
    layers: int = 2
    dropout: float = 0.2
    loss: str = "bce"  # "bce" (one sampled negative per position) or "ce" (full softmax)


class SASRec(nnx.Module):
    def __init__(self, num_items: int, cfg: SASRecConfig, *, rngs: nnx.Rngs):
        if cfg.loss not in ("bce", "ce"):
            raise ValueError(f"loss must be 'bce' or 'ce', got {cfg.loss!r}")
        self.encoder = SequenceEncoder(num_items + 1, cfg.max_len, cfg.dim, cfg.heads, cfg.layers,
                                       dropout_rate=cfg.dropout, rngs=rngs)

    def __call__(self, ids: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """ids `[B, L]` -> hidden state after each position `[B, L, D]`."""
        return self.encoder(ids, causal=True, key=key)

    def score(self, ids: jax.Array, candidates: jax.Array) -> jax.Array:
        """History ids `[B, L]` and candidate indices `[B, K]` -> scores `[B, K]`."""
        last = self(ids)[:, -1]
        return jnp.einsum("bd,bkd->bk", last, self.encoder.item_embed(candidates))


def _weights(batch: dict[str, jax.Array], dtype) -> jax.Array:
    """`[B, L]` 1 where a real item is followed by a real item (a padding slot predicts nothing)."""
    return ((batch["inputs"] != common.PAD) & (batch["targets"] != common.PAD)).astype(dtype)


def bce_loss(model: SASRec, batch: dict[str, jax.Array], key: jax.Array) -> jax.Array:
    """batch: inputs, targets (the next items), negatives `[B, L]`, all left-padded."""
    h = model(batch["inputs"], key)
    emb = model.encoder.item_embed
    pos = jnp.sum(h * emb(batch["targets"]), -1)
    neg = jnp.sum(h * emb(batch["negatives"]), -1)
    weight = _weights(batch, h.dtype)
    per_position = -jax.nn.log_sigmoid(pos) - jax.nn.log_sigmoid(-neg)
    return jnp.sum(per_position * weight) / jnp.maximum(weight.sum(), 1.0)


def ce_loss(model: SASRec, batch: dict[str, jax.Array], key: jax.Array) -> jax.Array:
    h = model(batch["inputs"], key)
    logits = h @ model.encoder.item_embed.embedding[...][1:].T  # [B, L, num_items]; item i is column i-1
    weight = _weights(batch, h.dtype)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(batch["targets"] - 1, 0))
    return jnp.sum(nll * weight) / jnp.maximum(weight.sum(), 1.0)


def make_batches(sequences: list[list[int]], num_items: int, max_len: int):
    """Returns a `make_batch(indices, rng)` over the left-padded train sequences `[S, max_len + 1]`."""
    padded = common.left_pad(sequences, max_len + 1)

    def make_batch(indices: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        rows = padded[indices]
        targets = rows[:, 1:]
        negatives = rng.integers(1, num_items + 1, size=targets.shape, dtype=np.int32)
        return {"inputs": rows[:, :-1], "targets": targets, "negatives": negatives}

    return make_batch


def train_sasrec(train: list[Record], index: common.ItemIndex, cfg: SASRecConfig = SASRecConfig(),
                 fit_cfg: FitConfig = FitConfig(), log=print) -> tuple[SASRec, list[float]]:
    sequences = common.train_sequences(train, index)
    model = SASRec(index.num_items, cfg, rngs=nnx.Rngs(fit_cfg.seed))
    loss_fn = bce_loss if cfg.loss == "bce" else ce_loss
    losses = fit(model, loss_fn, make_batches(sequences, index.num_items, cfg.max_len), len(sequences), fit_cfg, log)
    return model, losses


def sasrec_scores(model: SASRec, records: list[Record], index: common.ItemIndex, max_len: int) -> np.ndarray:
    """`[N, K]` scores of each record's candidates given its history."""
    histories = common.left_pad([index.encode(r.history) for r in records], max_len)
    graphdef, params = nnx.split(model)
    fn = jax.jit(lambda ids, cands: nnx.merge(graphdef, params).score(ids, cands))
    return batched_apply(fn, histories, common.candidate_matrix(records, index)).astype(np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser("sasrec", __doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--loss", choices=("bce", "ce"), default="bce")
    parser.add_argument("--max_len", type=int, default=20)
    parser.add_argument("--max_sequences_per_epoch", type=int, default=0, help="0 = all train sequences")
    args = parser.parse_args(argv)
    cfg = SASRecConfig(max_len=args.max_len, loss=args.loss)
    fit_cfg = FitConfig(args.epochs, args.batch_size, args.learning_rate, args.max_sequences_per_epoch, seed=args.seed)

    def score(train, evaluated, index):
        model, _ = train_sasrec(train, index, cfg, fit_cfg)
        return sasrec_scores(model, evaluated, index, cfg.max_len)

    common.run("sasrec", args, score)
    return 0


if __name__ == "__main__":
    sys.exit(main())
