"""LightGCN (He et al. 2020) on the train user-item graph, with a fold-in for unseen users.

Graph: one node per train user and per item, an edge for every (train user, item) of the user's
``history + [positive]``; symmetric normalisation 1/sqrt(deg_u * deg_i). Embeddings (64) are
propagated 3 layers without weights or non-linearities; the final embedding is the mean of layers
0..3. Loss: BPR on (user, interacted item, uniformly sampled item) plus L2 (1e-4) on the layer-0
embeddings of the batch. Adam; the CLI defaults (10 epochs of 16384 edges, lr 1e-2) keep the
Video Games run to a few CPU minutes (each step propagates the whole graph).

Valid/test users are not in the train graph (user split), so they are folded in (``--fold_in``):

- ``propagate`` (default): the user is attached to the graph with their history items as edges and
  propagated exactly like a train user, with their layer-0 embedding taken as the mean of the history
  items' layer-0 embeddings (the train graph itself is not updated);
- ``mean_items``: the mean of the history items' final embeddings.

    python -m r2rank_jax.baselines.lightgcn --benchmark DIR --out PATH.jsonl [--split test] [--seed 0]
        [--epochs 10] [--batch_size 16384] [--learning_rate 1e-2] [--fold_in propagate|mean_items]
"""
from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r2rank_jax.baselines import common
from r2rank_jax.baselines.training import FitConfig, fit
from r2rank_jax.data.benchmark import Record


@dataclasses.dataclass(frozen=True)
class LightGCNConfig:
    dim: int = 64
    layers: int = 3
    l2: float = 1e-4
    fold_in: str = "propagate"  # or "mean_items"


@dataclasses.dataclass(frozen=True)
class Graph:
    """Unique edges `[E]` (user index, item index 1..num_items) and their normalised weights."""

    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    num_users: int
    item_degree: np.ndarray  # [num_items + 1]

    @classmethod
    def from_sequences(cls, sequences: list[list[int]], num_items: int) -> Graph:
        pairs = np.unique(np.array([(u, i) for u, seq in enumerate(sequences) for i in set(seq)], dtype=np.int64), axis=0)
        users, items = pairs[:, 0], pairs[:, 1]
        user_degree = np.bincount(users, minlength=len(sequences))
        item_degree = np.bincount(items, minlength=num_items + 1)
        weights = 1.0 / np.sqrt(user_degree[users] * item_degree[items])
        return cls(users.astype(np.int32), items.astype(np.int32), weights.astype(np.float32), len(sequences), item_degree)


class LightGCN(nnx.Module):
    def __init__(self, num_users: int, num_items: int, cfg: LightGCNConfig, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.1)
        self.user_embed = nnx.Param(init(rngs.params(), (num_users, cfg.dim)))
        self.item_embed = nnx.Param(init(rngs.params(), (num_items + 1, cfg.dim)))
        self.layers = cfg.layers

    def propagate(self, graph: dict[str, jax.Array]) -> tuple[list[jax.Array], list[jax.Array]]:
        """Per-layer user `[U, D]` and item `[I + 1, D]` embeddings, layers 0..L."""
        users, items = [self.user_embed[...]], [self.item_embed[...]]
        w = graph["weights"][:, None]
        for _ in range(self.layers):
            u, i = users[-1], items[-1]
            users.append(jax.ops.segment_sum(w * i[graph["items"]], graph["users"], num_segments=u.shape[0]))
            items.append(jax.ops.segment_sum(w * u[graph["users"]], graph["items"], num_segments=i.shape[0]))
        return users, items


def bpr_loss(model: LightGCN, batch: dict[str, jax.Array], l2: float) -> jax.Array:
    users, items = model.propagate(batch)
    user_final = jnp.mean(jnp.stack(users), 0)[batch["u"]]
    item_final = jnp.mean(jnp.stack(items), 0)
    pos = jnp.sum(user_final * item_final[batch["pos"]], -1)
    neg = jnp.sum(user_final * item_final[batch["neg"]], -1)
    reg = (jnp.sum(users[0][batch["u"]] ** 2) + jnp.sum(items[0][batch["pos"]] ** 2)
           + jnp.sum(items[0][batch["neg"]] ** 2)) / (2 * batch["u"].shape[0])
    return -jnp.mean(jax.nn.log_sigmoid(pos - neg)) + l2 * reg


def train_lightgcn(train: list[Record], index: common.ItemIndex, cfg: LightGCNConfig = LightGCNConfig(),
                   fit_cfg: FitConfig = FitConfig(epochs=30, batch_size=4096), log=print
                   ) -> tuple[LightGCN, Graph, list[float]]:
    graph = Graph.from_sequences(common.train_sequences(train, index), index.num_items)
    model = LightGCN(graph.num_users, index.num_items, cfg, rngs=nnx.Rngs(fit_cfg.seed))
    static = {"users": graph.users, "items": graph.items, "weights": graph.weights}

    def make_batch(edge_ids: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        neg = rng.integers(1, index.num_items + 1, size=len(edge_ids), dtype=np.int32)
        return static | {"u": graph.users[edge_ids], "pos": graph.items[edge_ids], "neg": neg}

    losses = fit(model, lambda m, b, key: bpr_loss(m, b, cfg.l2), make_batch, len(graph.users), fit_cfg, log)
    return model, graph, losses


def lightgcn_scores(model: LightGCN, graph: Graph, records: list[Record], index: common.ItemIndex,
                    fold_in: str = "propagate") -> np.ndarray:
    """`[N, K]` scores of each record's candidates for its folded-in user (see module docstring)."""
    static = {"users": jnp.asarray(graph.users), "items": jnp.asarray(graph.items), "weights": jnp.asarray(graph.weights)}
    _, item_layers = jax.jit(model.propagate)(static)
    item_layers = [np.asarray(x) for x in item_layers]
    item_final = np.mean(item_layers, axis=0)
    lookup = index.lookup()
    vectors = np.zeros((len(records), item_final.shape[1]), dtype=np.float32)
    for n, record in enumerate(records):
        hist = np.unique(index.encode(record.history, lookup))
        if hist.size == 0:
            continue
        if fold_in == "mean_items":
            vectors[n] = item_final[hist].mean(0)
        elif fold_in == "propagate":
            # Layer l+1 of a user = sum over their items of w * item layer l, w = 1/sqrt(deg_u deg_i).
            w = 1.0 / np.sqrt(hist.size * np.maximum(graph.item_degree[hist], 1))
            layers = [item_layers[0][hist].mean(0)] + [w @ item_layers[l][hist] for l in range(model.layers)]
            vectors[n] = np.mean(layers, axis=0)
        else:
            raise ValueError(f"fold_in must be 'propagate' or 'mean_items', got {fold_in!r}")
    cands = common.candidate_matrix(records, index)
    return np.einsum("nd,nkd->nk", vectors, item_final[cands]).astype(np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser("lightgcn", __doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=16384)
    parser.add_argument("--learning_rate", type=float, default=1e-2)
    parser.add_argument("--fold_in", choices=("propagate", "mean_items"), default="propagate")
    args = parser.parse_args(argv)
    cfg = LightGCNConfig(fold_in=args.fold_in)
    fit_cfg = FitConfig(args.epochs, args.batch_size, args.learning_rate, seed=args.seed)

    def score(train, evaluated, index):
        model, graph, _ = train_lightgcn(train, index, cfg, fit_cfg)
        return lightgcn_scores(model, graph, evaluated, index, cfg.fold_in)

    common.run("lightgcn", args, score)
    return 0


if __name__ == "__main__":
    sys.exit(main())
