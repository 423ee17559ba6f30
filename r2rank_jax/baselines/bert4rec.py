"""BERT4Rec (Sun et al. 2019): a bidirectional transformer trained with the cloze task.

2 bidirectional pre-LN blocks, hidden 64, 2 heads, GELU feed-forward of width 256, dropout 0.2,
learned positions over max_len + 1 slots (`--max_len`, default 20: 21 slots). Training sequences are the train users'
``history + [positive]``; every real item is replaced by [MASK] with probability 0.2 (at least one
per sequence), and the model predicts the masked items with a softmax over all items (output layer
tied to the item embeddings, plus a per-item bias). The full softmax is the expensive part, so a
batch predicts at most `predictions_per_sequence * B` masked slots, pooled over the batch (fixed
shapes; with short histories most sequences have one or two masked items); draws beyond the budget
stay unmasked. Scoring appends [MASK] to the
user's history and reads the candidates' logits there. Adam, lr 1e-3.

    python -m r2rank_jax.baselines.bert4rec --benchmark DIR --out PATH.jsonl [--split test] [--seed 0]
        [--epochs 3] [--batch_size 128] [--max_len 20] [--max_sequences_per_epoch 0]
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
class BERT4RecConfig:
    max_len: int = 20  # history length; the model sees max_len + 1 slots (history + [MASK])
    dim: int = 64
    heads: int = 2
    layers: int = 2
    dropout: float = 0.2
    mask_prob: float = 0.2
    predictions_per_sequence: float = 3.0


class BERT4Rec(nnx.Module):
    def __init__(self, num_items: int, cfg: BERT4RecConfig, *, rngs: nnx.Rngs):
        self.mask_token = num_items + 1
        self.encoder = SequenceEncoder(num_items + 2, cfg.max_len + 1, cfg.dim, cfg.heads, cfg.layers,
                                       ffn_dim=4 * cfg.dim, dropout_rate=cfg.dropout, activation="gelu", rngs=rngs)
        self.out_bias = nnx.Param(jnp.zeros((num_items + 2,)))

    def logits_at(self, hidden: jax.Array, items: jax.Array) -> jax.Array:
        """hidden `[..., D]`, item indices `[..., K]` -> `[..., K]`."""
        return jnp.einsum("...d,...kd->...k", hidden, self.encoder.item_embed(items)) + self.out_bias[...][items]

    def score(self, ids: jax.Array, candidates: jax.Array) -> jax.Array:
        """ids `[B, max_len + 1]` ending in [MASK], candidates `[B, K]` -> `[B, K]`."""
        return self.logits_at(self.encoder(ids, causal=False)[:, -1], candidates)


def cloze_loss(model: BERT4Rec, batch: dict[str, jax.Array], key: jax.Array) -> jax.Array:
    """batch: inputs `[B, L]` (with [MASK]s); slots (flat index into B * L), targets, weights `[M]`."""
    h = model.encoder(batch["inputs"], causal=False, key=key)
    h = h.reshape(-1, h.shape[-1])[batch["slots"]]  # [M, D]
    table = model.encoder.item_embed.embedding[...]
    num_items = table.shape[0] - 2
    logits = h @ table[1:num_items + 1].T + model.out_bias[...][1:num_items + 1]  # [M, num_items]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(batch["targets"] - 1, 0))
    return jnp.sum(nll * batch["weights"]) / jnp.maximum(batch["weights"].sum(), 1.0)


def make_batches(sequences: list[list[int]], cfg: BERT4RecConfig, mask_token: int, batch_size: int):
    padded = common.left_pad(sequences, cfg.max_len + 1)
    budget = max(1, int(np.ceil(cfg.predictions_per_sequence * batch_size)))

    def make_batch(indices: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        rows = padded[indices].copy()
        real = rows != common.PAD
        masked = real & (rng.random(rows.shape) < cfg.mask_prob)
        # At least one masked item per sequence: the last one when the draw masked none.
        masked[~masked.any(1), -1] = True
        flat = np.flatnonzero(masked)
        if flat.size > budget:  # keep a random subset; the others stay visible
            flat = np.sort(rng.choice(flat, budget, replace=False))
        keep = np.zeros(rows.size, dtype=bool)
        keep[flat] = True
        slots = np.zeros(budget, dtype=np.int32)
        slots[: flat.size] = flat
        weights = np.zeros(budget, dtype=np.float32)
        weights[: flat.size] = 1.0
        targets = np.where(weights > 0, rows.ravel()[slots], common.PAD).astype(np.int32)
        rows[keep.reshape(rows.shape)] = mask_token
        return {"inputs": rows, "slots": slots, "targets": targets, "weights": weights}

    return make_batch


def train_bert4rec(train: list[Record], index: common.ItemIndex, cfg: BERT4RecConfig = BERT4RecConfig(),
                   fit_cfg: FitConfig = FitConfig(), log=print) -> tuple[BERT4Rec, list[float]]:
    sequences = common.train_sequences(train, index)
    model = BERT4Rec(index.num_items, cfg, rngs=nnx.Rngs(fit_cfg.seed))
    losses = fit(model, cloze_loss, make_batches(sequences, cfg, model.mask_token, min(fit_cfg.batch_size, len(sequences))), len(sequences), fit_cfg, log)
    return model, losses


def bert4rec_scores(model: BERT4Rec, records: list[Record], index: common.ItemIndex, max_len: int) -> np.ndarray:
    """`[N, K]`: candidates' logits at a [MASK] appended to each history."""
    histories = common.left_pad([index.encode(r.history[-max_len:]) + [model.mask_token] for r in records], max_len + 1)
    graphdef, params = nnx.split(model)
    fn = jax.jit(lambda ids, cands: nnx.merge(graphdef, params).score(ids, cands))
    return batched_apply(fn, histories, common.candidate_matrix(records, index)).astype(np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser("bert4rec", __doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--mask_prob", type=float, default=0.2)
    parser.add_argument("--max_len", type=int, default=20, help="history items the model sees (the benchmark's history length)")
    parser.add_argument("--max_sequences_per_epoch", type=int, default=0, help="0 = all train sequences")
    args = parser.parse_args(argv)
    cfg = BERT4RecConfig(max_len=args.max_len, mask_prob=args.mask_prob)
    fit_cfg = FitConfig(args.epochs, args.batch_size, args.learning_rate, args.max_sequences_per_epoch, seed=args.seed)

    def score(train, evaluated, index):
        model, _ = train_bert4rec(train, index, cfg, fit_cfg)
        return bert4rec_scores(model, evaluated, index, cfg.max_len)

    common.run("bert4rec", args, score)
    return 0


if __name__ == "__main__":
    sys.exit(main())
