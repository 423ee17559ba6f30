"""R2Rec (issue 9 item 4): the interaction-chain sampler against brute-force enumeration, the rewards
and group advantages against hand-computed values, the GRPO loss against a direct computation, and
the progressive masked prompting filter with stub teachers."""
import dataclasses
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from r2rank_jax.data.benchmark import Record
from r2rank_jax.methods.r2rec_chains import Chain, ChainGraph
from r2rank_jax.methods.r2rec_grpo import grpo_loss
from r2rank_jax.methods.r2rec_rewards import group_advantages, rank_reward, step_reward, total_reward
from r2rank_jax.methods.r2rec_teacher import ChainPair, mask_answer, progressive_traces
from r2rank_jax.teacher.base import TeacherReply

# u0 likes a b c; u1 likes a b; u2 likes b c d; u3 likes a d; u4 likes e (isolated)
GRAPH = {"u0": ["a", "b", "c"], "u1": ["a", "b"], "u2": ["b", "c", "d"], "u3": ["a", "d"], "u4": ["e"]}


def brute_force(histories, user, history):
    """Every (i, v, j) over all items and users satisfying the closure constraint, by definition."""
    items = sorted({i for h in histories.values() for i in h} | set(history))
    return sorted(Chain(user, i, v, j) for i, v, j in itertools.product(items, sorted(histories), items)
                  if i in history and v != user and i in histories[v] and j in histories[v] and j != i
                  and j in history)


def test_chains_match_brute_force_and_close_the_cycle():
    g = ChainGraph(GRAPH)
    for user, history in [*GRAPH.items(), ("new", ["a", "b", "d"]), ("new2", ["e"])]:
        got = g.all_chains(user, history)
        assert sorted(got) == brute_force(GRAPH, user, history)
        for c in got:
            assert c.item in history and c.back_item in history and c.item != c.back_item
            assert c.other_user != user and {c.item, c.back_item} <= set(GRAPH[c.other_user])
    # hand count: u0 shares {a,b} with u1 and {b,c} with u2 → 2 + 2 ordered chains; u3 shares only a
    assert sorted(g.all_chains("u0", GRAPH["u0"])) == sorted(
        [Chain("u0", "a", "u1", "b"), Chain("u0", "b", "u1", "a"), Chain("u0", "b", "u2", "c"),
         Chain("u0", "c", "u2", "b")])
    assert g.all_chains("u4", GRAPH["u4"]) == [] and g.sample("u4", GRAPH["u4"], 3) == ()
    assert g.sample("u3", GRAPH["u3"], 5) == ()       # u3 shares a single item with anyone


def test_sampling_is_uniform_distinct_and_deterministic():
    rng = np.random.default_rng(0)
    histories = {f"u{n}": sorted(rng.choice(list("abcdefghij"), size=5, replace=False)) for n in range(30)}
    g = ChainGraph(histories)
    everything = g.all_chains("u0", histories["u0"])
    assert len(everything) > 10
    assert g.sample("u0", histories["u0"], len(everything) + 5) == tuple(everything)
    picks = g.sample("u0", histories["u0"], 6, seed=3)
    assert len(set(picks)) == 6 and set(picks) <= set(everything)
    assert picks == g.sample("u0", histories["u0"], 6, seed=3)
    counts = {c: 0 for c in everything}
    for seed in range(3000):
        for c in g.sample("u0", histories["u0"], 1, seed=seed):
            counts[c] += 1
    freq = np.array(list(counts.values())) / 3000
    assert np.all(np.abs(freq - 1 / len(everything)) < 4 * np.sqrt(1 / len(everything) / 3000))
    # a cap at the largest item degree changes nothing
    assert ChainGraph(histories, max_item_users=30).all_chains("u0", histories["u0"]) == everything


def test_rewards_match_hand_computed_values():
    text = ("Step 1: C1 links two of your items.\nStep 2: nothing cited here.\nstep 3: C9 and C2 agree.\n"
            "Step 4: H1 only.\n<answer>3 > 1 > 2</answer>")
    # 4 steps; valid with 2 chains: step 1 (C1) and step 3 (C2 exists, C9 does not)
    assert step_reward(text, num_chains=2, num_items=5) == pytest.approx(2 / 4)
    # no chains → liked-item labels count: only step 4 cites H1
    assert step_reward(text, num_chains=0, num_items=5) == pytest.approx(1 / 4)
    assert step_reward("<answer>1 > 2</answer>", 2, 2) == 0.0
    assert rank_reward(text, 3, positive_index=0) == pytest.approx(1 / 2)    # candidate [1] ranked second
    assert rank_reward(text, 3, positive_index=2) == pytest.approx(1.0)
    assert rank_reward("<answer>2</answer>", 3, positive_index=0) == 0.0      # partial, positive unranked
    assert rank_reward("Step 1: C1", 3, positive_index=0) == 0.0              # unparsable
    total, s, r = total_reward(text, 2, 5, 3, positive_index=0)
    assert (total, s, r) == pytest.approx((0.5 + 2 * 0.5, 0.5, 0.5))


def test_group_advantages_are_z_scores_within_each_group():
    rewards = np.array([[3.0, 1.0, 1.0, 3.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 3.0]])
    adv = group_advantages(rewards, eps=0.0)
    np.testing.assert_allclose(adv[0], [1, -1, -1, 1])              # mean 2, std 1
    np.testing.assert_allclose(adv[1], [0, 0, 0, 0])                # equal rewards
    std = np.sqrt((3 * 0.75 ** 2 + 2.25 ** 2) / 4)                  # mean 0.75
    np.testing.assert_allclose(adv[2], [-0.75 / std] * 3 + [2.25 / std])


def test_grpo_loss_matches_a_direct_computation():
    logp = np.log(np.array([[0.5, 0.2, 0.9], [0.3, 0.55, 0.1]]))
    old = np.log(np.array([[0.4, 0.2, 0.5], [0.3, 0.5, 0.1]]))
    mask = np.array([[True, True, False], [True, True, True]])
    adv = np.array([1.5, -0.5])
    eps = 0.2
    want = 0.0
    for b in range(2):
        ratio = np.exp(logp[b] - old[b])
        obj = np.minimum(ratio * adv[b], np.clip(ratio, 1 - eps, 1 + eps) * adv[b])
        want += obj[mask[b]].mean()
    loss, stats = grpo_loss(jnp.asarray(logp), jnp.asarray(old), jnp.asarray(adv), jnp.asarray(mask), eps)
    assert float(loss) == pytest.approx(-want / 2, rel=1e-5)
    assert float(stats["clip_frac"]) == pytest.approx(1 / 5)        # only 0.5/0.4 = 1.25 leaves [0.8, 1.2]


class StubTeacher:
    """Writes steps that name the answer's number; verifies by picking the last cited candidate number."""
    name = "stub"

    def __init__(self, write_steps=True):
        self.write_steps, self.calls = write_steps, []

    def respond(self, requests):
        import re
        for r in requests:
            self.calls.append((r.pair.stage, r.message))
            if r.pair.stage == "write":
                p = int(re.search(r"candidate \[(\d+)\]", r.message).group(1))
                text = f"Step 1: C1 and candidate [{p}] fit.\n<answer>{p}</answer>" if self.write_steps else "hm"
            else:
                cited = re.findall(r"candidate \[(\d+)\]", r.message.split("Reasoning so far:")[1])
                text = f"<answer>{cited[-1] if cited else 1} > 2</answer>"
            yield TeacherReply(request=r, text=text)

    def close(self):
        pass


def _items():
    from r2rank_jax.methods.r2rec_prompts import R2RecPrompt

    rec = Record("u0", ("a", "b"), ("x", "y", "z"), "z")
    prompt = R2RecPrompt("u0", "PROMPT", "PROMPT", (1, 2, 3), (), ("a", "b"), 2)
    pair = ChainPair(record=rec, candidate="z", label=1, history=("a", "b"), user_message="PROMPT", prompt="PROMPT")
    return [(prompt, pair)], {"x": "Title X", "y": "Title Y", "z": "Title Z"}


def test_progressive_masking_rejects_steps_that_only_name_the_answer():
    items, titles = _items()
    teacher = StubTeacher()
    traces, stats = progressive_traces(teacher, items, titles)
    # level 1 (hint removed, steps as written) leads to [3]; level 2 masks "[3]" → the stub answers 1
    assert traces == [] and stats.rejected_level == {1: 0, 2: 1}
    assert stats.log["u0"]["verdict"] == "rejected_level_2" and stats.log["u0"]["verify"] == {
        "1": "<answer>3 > 2</answer>", "2": "<answer>1 > 2</answer>"}
    assert [stage for stage, _ in teacher.calls] == ["write", "verify", "verify"]
    write, level1, level2 = (m for _, m in teacher.calls)
    assert "[3]" in write and "Title Z" in write and "Hint" not in level1 and "[MASK]" in level2
    masked = mask_answer(["candidate [3] \"Title Z\" beats [13]"], 3, "Title Z")
    assert masked == ('candidate [MASK] "[MASK]" beats [13]',)
    _, stats = progressive_traces(StubTeacher(write_steps=False), items, titles)
    assert stats.no_steps == 1 and stats.accepted == 0


def test_scripted_chain_teacher_keeps_traces_whose_masked_steps_lead_to_the_answer():
    from r2rank_jax.methods.r2rec_teacher import ScriptedChainTeacher

    attr = lambda g, p, b: dict(genre=g, platform=p, brand=b)  # noqa: E731
    attrs = {"a": attr("Racing", "PC", "B1"), "b": attr("Racing", "PS4", "B2"), "x": attr("Sports", "PS4", "B2"),
             "y": attr("Puzzle", "PC", "B3"), "z": attr("Racing", "PC", "B1")}
    items, titles = _items()
    chain = Chain("u0", "a", "u9", "b")
    prompt, pair = items[0]
    pair = dataclasses.replace(pair, chains=(chain,))
    prompt = dataclasses.replace(prompt, chains=(chain,))
    traces, stats = progressive_traces(ScriptedChainTeacher(attrs, titles, noise=0.0), [(prompt, pair)], titles)
    assert stats.accepted == 1
    response = traces[0]["response"]
    # ranked on the claimed attributes: z (all three), y (PC), x (none)
    assert response.startswith("Step 1: C1") and response.endswith("<answer>3 > 2 > 1</answer>")
    assert "Step 2: candidate [3] is a Racing game on PC by B1, which fits the tastes in C1." in response
    assert step_reward(response, num_chains=1, num_items=2) == 1.0
    # a teacher arguing for another candidate (noise 1) is caught at level 1
    _, stats = progressive_traces(ScriptedChainTeacher(attrs, titles, noise=1.0), [(prompt, pair)], titles)
    assert stats.accepted == 0 and stats.rejected_level[1] == 1
