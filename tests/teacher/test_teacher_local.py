"""Local teacher: answer-conditioned rationalization through a Generator; the tiny JAX model end to end."""
import json

from r2rank_jax.teacher import ledger
from r2rank_jax.teacher.factory import TeacherSpec
from r2rank_jax.teacher.generator import Generation, GenerationOptions
from r2rank_jax.teacher.local import LocalTeacher
from r2rank_jax.teacher.prompts import RATIONALIZATION_HINT, leaks_hint, rationalization_message
from r2rank_jax.teacher.synthesize import SynthesisConfig, synthesize, synthesize_benchmark


class HintFollower:
    """A fake Generator that answers what the hint says; every third response gives the hint away."""

    supports_sampling = False

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls = 0
        self.prompts = []

    def generate(self, prompts, options):
        out = []
        for ids in prompts:
            text = self.tokenizer.decode(ids)
            self.prompts.append(text)
            answer = "Not Recommend" if "is <answer>Not Recommend</answer>" in text else "Recommend"
            self.calls += 1
            leak = "As I was told, " if self.calls % 3 == 0 else ""
            body = f"#Initial reasoning: x\n#Self-check: y\n#Final conclusion and suggestion: {leak}z\n<answer>{answer}</answer>"
            ids = tuple(self.tokenizer(body, add_special_tokens=False)["input_ids"])
            out.append(Generation(text=body, token_ids=ids, finish_reason="stop"))
        return out


def test_rationalization_hint_is_sent_but_never_stored(builder, train_records, tmp_path):
    gen = HintFollower(builder.tokenizer)
    teacher = LocalTeacher(gen, GenerationOptions(max_new_tokens=8), batch_size=4)
    stats = synthesize(teacher, builder, train_records, tmp_path,
                       SynthesisConfig(negatives_per_user=2, max_users=6, rationalize=True))
    assert gen.calls == 18 and all("Note for writing this example" in p for p in gen.prompts)
    assert stats["per_label"]["positive"]["leak"] + stats["per_label"]["negative"]["leak"] == 6
    assert stats["accepted"] == 12 and stats["failures_by_kind"] == {"leak": 6}
    for line in map(json.loads, (tmp_path / ledger.CORPUS).read_text().splitlines()):
        assert "Note for writing" not in line["prompt"] and "Note for writing" not in line["user_message"]
        assert not leaks_hint(line["response"])


def test_hint_text():
    msg = rationalization_message("MESSAGE", "Not Recommend")
    assert msg.startswith("MESSAGE\n\n") and msg.count("<answer>Not Recommend</answer>") == 2
    assert "{answer}" in RATIONALIZATION_HINT
    assert leaks_hint("The correct decision is given") and not leaks_hint("The user likes racing games.")


def test_local_tiny_model_end_to_end(tiny_world, tmp_path):
    bench, tok = tiny_world
    spec = TeacherSpec(kind="local", synthetic_tiny=True, max_new_tokens=8, batch_size=4)
    stats = synthesize_benchmark(bench, tmp_path, spec, SynthesisConfig(max_users=2, rationalize=True),
                                 tokenizer_dir=str(tok))
    # A random model writes no answer tag: every response is a parse failure, counted as such.
    assert stats["responses"] == 4 and stats["teacher"] == "local:synthetic-tiny"
    assert stats["parse_failures"] + stats["accepted"] + stats["failures_by_kind"].get("wrong_decision", 0) == 4
