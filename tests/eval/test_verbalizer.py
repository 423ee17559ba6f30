"""Verbalizer: answer log-probs against a direct softmax of the full-sequence decoder's logits, and the
token-level handling of answer tags with toy tokenizers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r2rank_jax.eval import verbalizer as vb
from r2rank_jax.models.config import ModelConfig
from r2rank_jax.models.decoder import Decoder

VOCAB = 48


@pytest.fixture(scope="module")
def model():
    cfg = ModelConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                      num_kv_heads=2, head_dim=8, attention_bias=True, tie_word_embeddings=False,
                      max_position_embeddings=256)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(0)
    # Large weights, so that log-probs differ a lot between tokens and positions (an off-by-one shows).
    fill = lambda path, leaf: jnp.asarray(  # noqa: E731
        1.0 + 0.1 * rng.standard_normal(leaf.shape) if "scale" in jax.tree_util.keystr(path)
        else 0.4 * rng.standard_normal(leaf.shape), leaf.dtype)
    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


def reference_logprobs(model, pairs) -> np.ndarray:
    """For (context, answer) pairs: the sum of log-softmax(logits) at the answer tokens, from one
    full-sequence forward per pair (right padded to a common length, so one compile)."""
    fulls = [list(c) + list(a) for c, a in pairs]
    width = max(len(f) for f in fulls)
    tokens = np.zeros((len(fulls), width), np.int32)
    positions = np.full((len(fulls), width), -1, np.int32)
    for i, f in enumerate(fulls):
        tokens[i, :len(f)], positions[i, :len(f)] = f, np.arange(len(f))
    logits = np.asarray(nnx.jit(lambda m, t, p: m(t, p, logits_at="all").logits)(model, tokens, positions), np.float64)
    top = logits.max(-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    return np.array([sum(logp[i, len(c) - 1 + j, t] for j, t in enumerate(a)) for i, (c, a) in enumerate(pairs)])


ANSWERS = [[5], [7, 9], [11, 12, 13]]


def test_independent_contexts_match_full_forward(model):
    rng = np.random.default_rng(1)
    contexts = [rng.integers(1, VOCAB, size=n).tolist() for n in (3, 17, 9, 1, 12, 20, 6)]
    scorer = vb.AnswerScorer(model, ANSWERS, buckets=(8, 16, 32), batch_size=3)
    got = scorer.logprobs(contexts)
    want = reference_logprobs(model, [(c, a) for c in contexts for a in ANSWERS]).reshape(len(contexts), 3)
    assert got.shape == (7, 3)
    assert np.ptp(want) > 1.0  # the check below can tell positions and tokens apart
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)


@pytest.mark.parametrize("pack", [True, False])
def test_shared_prefix_matches_full_forward_and_does_not_recompile(model, pack):
    rng = np.random.default_rng(2)
    prefixes = [rng.integers(1, VOCAB, size=n).tolist() for n in (10, 4)]
    conts = [[rng.integers(1, VOCAB, size=n).tolist() for n in (1, 5, 3)],
             [rng.integers(1, VOCAB, size=n).tolist() for n in (7, 2, 4)]]
    scorer = vb.AnswerScorer(model, ANSWERS, buckets=(8, 16, 32), pack=pack)
    used, unused = (vb._answer_logprobs_packed, vb._answer_logprobs) if pack else (vb._answer_logprobs,
                                                                                    vb._answer_logprobs_packed)
    before = (used._cache_size(), unused._cache_size())
    got = scorer.logprobs_shared(prefixes, conts)
    # The 3 rows of a user (at most 12 tokens) pack into 16 slots, less than 3 rows of 8: packed when allowed.
    assert used._cache_size() == before[0] + 1 and unused._cache_size() == before[1]
    want = reference_logprobs(model, [(prefixes[u] + c, a) for u in range(2) for c in conts[u] for a in ANSWERS])
    want = want.reshape(6, 3)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)
    compiled = used._cache_size()
    shorter = [[c[:max(1, len(c) - 1)] for c in user] for user in conts]  # same buckets, other lengths
    scorer.logprobs_shared([p[:-1] for p in prefixes], shorter)
    assert used._cache_size() == compiled
    # The decision score is the difference of the first two answers' log-probs.
    np.testing.assert_allclose(vb.decision_scores(got[:, :2]), want[:, 0] - want[:, 1], atol=4e-4)


def test_single_token_answers_and_bad_input(model):
    contexts = [[1, 2, 3], [4, 5]]
    got = vb.AnswerScorer(model, [[5], [6]], buckets=(4,)).logprobs(contexts)
    want = reference_logprobs(model, [(c, [t]) for c in contexts for t in (5, 6)]).reshape(2, 2)
    np.testing.assert_allclose(got, want, atol=2e-4)
    with pytest.raises(ValueError, match="exceeds the largest bucket 4"):
        vb.AnswerScorer(model, [[5]], buckets=(4,)).logprobs([[1] * 5])
    with pytest.raises(ValueError, match="no empty answer"):
        vb.AnswerScorer(model, [[5], []])


class ToyTokenizer:
    """Greedy longest-match over a fixed vocabulary; decode joins the pieces."""

    def __init__(self, pieces):
        self.pieces = list(pieces)

    def __call__(self, text, add_special_tokens=False):
        ids, i = [], 0
        while i < len(text):
            best = max((p for p in self.pieces if text.startswith(p, i)), key=len)
            ids.append(self.pieces.index(best))
            i += len(best)
        return {"input_ids": ids}

    def decode(self, ids, skip_special_tokens=False):
        return "".join(self.pieces[i] for i in ids)


LETTERS = list("abcdefghijklmnopqrstuvwxyzRN ./<>")
SP_LIKE = ToyTokenizer(LETTERS + ["<answer>", "</answer>", "Recommend", "Not", " Recommend", "<eos>"])
BPE_LIKE = ToyTokenizer(LETTERS + ["<", "answer", ">", ".<", "</", "Recommend", "Not", " Recommend", ">R", "ecommend",
                                   "<eos>"])


def ids_of(tok, pieces):
    return [tok.pieces.index(p) for p in pieces]


def test_encode_answers_strips_the_tag_tokens():
    assert vb.encode_answers(SP_LIKE, ["Recommend", "Not Recommend"]) == (
        tuple(ids_of(SP_LIKE, ["Recommend"])), tuple(ids_of(SP_LIKE, ["Not", " Recommend"])))
    with pytest.raises(ValueError, match="do not start with the tokens of '<answer>'"):
        vb.encode_answers(BPE_LIKE, ["Recommend"])  # ">R" merges the tag into the answer


def test_rationale_context_cuts_after_the_tag_or_appends_it():
    eos = SP_LIKE.pieces.index("<eos>")
    gen = ids_of(SP_LIKE, ["o", "k", ".", "<answer>", "Recommend", "</answer>", "<eos>"])
    assert vb.rationale_context(gen, SP_LIKE, drop_ids=[eos]) == gen[:4]
    # The tag spread over tokens, the first merged with a period: cut after the token that ends it.
    gen = ids_of(BPE_LIKE, ["o", "k", ".<", "answer", ">", "Not", " Recommend"])
    assert vb.rationale_context(gen, BPE_LIKE) == gen[:5]
    # The tag ends inside a token (">R"): keep the tokens before it, re-tokenize the tag's rest.
    gen = ids_of(BPE_LIKE, ["o", "<", "answer", ">R", "ecommend"])
    assert vb.rationale_context(gen, BPE_LIKE) == gen[:3] + ids_of(BPE_LIKE, [">"])
    # No tag: trailing EOS dropped, the tag appended.
    gen = ids_of(SP_LIKE, ["o", "k", "<eos>"])
    assert vb.rationale_context(gen, SP_LIKE, drop_ids=[eos]) == gen[:2] + ids_of(SP_LIKE, ["<answer>"])
    # Only the first tag counts (a rationale quoting the instruction's tags is cut at the first one).
    gen = ids_of(SP_LIKE, ["<answer>", "N", "o", "t", "</answer>", "<answer>"])
    assert vb.rationale_context(gen, SP_LIKE) == gen[:1]


# ------------------------------------------------------------------- reading on from a decode's cache

def _decode(model, prefixes, suffixes, pack, eos=()):
    from r2rank_jax.sampling.params import SamplingParams
    from r2rank_jax.sampling.sampler import Sampler, SamplerConfig
    sampler = Sampler(model, SamplerConfig(max_new_tokens=10, eos_ids=tuple(eos), buckets=(8, 16, 32),
                                           pack_suffixes=pack))
    rows = len(prefixes) * len(suffixes[0])
    return sampler.generate_shared(prefixes, suffixes, SamplingParams.make(rows, temperature=0.0),
                                   jax.random.key(0), keep_cache=True)


def _generated(decoded):
    ids, valid = np.asarray(decoded.output.ids), np.asarray(decoded.output.valid)
    return [ids[b][valid[b]].tolist() for b in range(ids.shape[0])]


@pytest.mark.parametrize("pack", [True, False])
def test_answers_read_on_from_the_decode_cache_match_a_fresh_forward(model, pack):
    rng = np.random.default_rng(3)
    prefixes = [rng.integers(1, VOCAB, size=n).tolist() for n in (9, 5)]
    suffixes = [[rng.integers(1, VOCAB, size=n).tolist() for n in (3, 6, 2)],
                [rng.integers(1, VOCAB, size=n).tolist() for n in (4, 1, 5)]]
    first = _generated(_decode(model, prefixes, suffixes, pack))
    # Stop row 0 at its 4th token: its later slots then hold padding written after the stop.
    decoded = _decode(model, prefixes, suffixes, pack, eos=[first[0][3]])
    gen = _generated(decoded)
    lengths = [len(g) for g in gen]
    assert min(lengths) < 10 and max(lengths) == 10, lengths    # some rows stopped early, some did not
    contexts = [gen[0][:2] + [7, 8],          # cut inside the rationale (its later tokens must not be seen)
                gen[1],                       # the whole rationale: its last token is fed again
                gen[2] + [7],                 # the rationale and one more token (a tag appended)
                [11],                         # nothing of the rationale
                gen[4][:1],                   # its first token only
                gen[5][:-1] + [12, 13, 14]]   # all but the last, then three tokens
    scorer = vb.AnswerScorer(model, ANSWERS, buckets=(8, 16, 32))
    got = scorer.logprobs_after_decode(decoded, contexts)
    full = [prefixes[b // 3] + suffixes[b // 3][b % 3] + contexts[b] for b in range(6)]
    want = reference_logprobs(model, [(c, a) for c in full for a in ANSWERS]).reshape(6, 3)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)
    # Without masking the tokens past the cut, row 0 would score another context.
    unmasked = reference_logprobs(model, [(prefixes[0] + suffixes[0][0] + gen[0] + [7, 8], a) for a in ANSWERS])
    assert np.max(np.abs(unmasked - want[0])) > 1e-2
    with pytest.raises(ValueError, match="5 contexts for 6 decoded rows"):
        scorer.logprobs_after_decode(decoded, contexts[:5])


def test_the_sft_only_scorer_reads_the_decode_cache_like_a_second_prefill(model):
    """VerbalizedBatchScorer with a sampler (SFT-only) against the second-prefill path over the same
    rationale contexts; the tag is the token the greedy rationales write mid-way, so rows are cut."""
    from r2rank_jax.eval.pointwise import VerbalizedBatchScorer
    from r2rank_jax.sampling.sampler import Sampler, SamplerConfig
    rng = np.random.default_rng(4)
    u, k = 2, 3
    prefixes = [rng.integers(1, VOCAB, size=n).tolist() for n in (7, 4)]
    suffixes = [[rng.integers(1, VOCAB, size=int(n)).tolist() for n in rng.integers(1, 6, size=k)] for _ in range(u)]
    gen = _generated(_decode(model, prefixes, suffixes, True))
    tag = gen[0][4]
    pieces = [f"w{i} " for i in range(VOCAB)]
    pieces[tag] = "<answer>"
    tok = ToyTokenizer(pieces)
    p = max(map(len, prefixes))
    batch = {"prefix_tokens": np.array([[0] * (p - len(x)) + x for x in prefixes], np.int32),
             "prefix_lengths": np.array([len(x) for x in prefixes], np.int32),
             "suffix_tokens": np.array([[s + [0] * (8 - len(s)) for s in user] for user in suffixes], np.int32),
             "suffix_lengths": np.array([[len(s) for s in user] for user in suffixes], np.int32),
             "example_mask": np.ones(u, bool), "labels": np.zeros((u, k), np.float32),
             "candidate_index": np.tile(np.arange(k), (u, 1)), "user_ids": np.array(["a", "b"])}
    sampler = Sampler(model, SamplerConfig(max_new_tokens=10, buckets=(8, 16, 32)))
    scorer = vb.AnswerScorer(model, [[5], [7, 9]], buckets=(8, 16, 32), row_buckets=(32,))
    batch_scorer = VerbalizedBatchScorer(scorer, tok, sampler)
    got = batch_scorer(batch, jax.random.key(0))
    contexts = [vb.rationale_context(g, tok) for g in gen]
    assert sum(tag in g for g in gen) >= 1 and any(len(c) < len(g) for c, g in zip(contexts, gen))  # some are cut
    want = scorer.logprobs_shared(prefixes, [[suffixes[i][j] + contexts[i * k + j] for j in range(k)] for i in range(u)])
    np.testing.assert_allclose(got, vb.decision_scores(want).reshape(u, k), atol=4e-4, rtol=0)
    assert batch_scorer.tag_rate == sum(tag in g for g in gen) / (u * k)
