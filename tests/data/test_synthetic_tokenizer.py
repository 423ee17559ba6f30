"""The synthetic world's sentencepiece tokenizer: round trip, specials, offline loading, determinism."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from _data_world import world_benchmark, world_tokenizer, world_tokenizer_dir
from r2rank_jax.data import benchmark
from r2rank_jax.data import prompt_text as pt
from r2rank_jax.data import tokenizer as toklib


def world_texts() -> list[str]:
    items = benchmark.load_items(world_benchmark())
    texts = [obj["title"] for obj in items.values()]
    texts += toklib.template_lines() + list(pt.answer_strings())
    texts += ["Ünïcode 😀 and\ttabs\n\nand  double  spaces ", "", " leading space", "a\r\nb"]
    return texts


def test_round_trip_on_world_text():
    tok = world_tokenizer()
    for text in world_texts():
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text, text


def test_rendered_prompt_round_trip_and_specials():
    tok = world_tokenizer()
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi\nthere"}], add_generation_prompt=True,
                                       tokenize=False)
    assert rendered == "<|im_start|>user\nhi\nthere<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(rendered, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == rendered
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<pad>" and tok.pad_token_id is not None
    for tag in ("<answer>", "</answer>", "<|im_start|>", "<|im_end|>"):
        assert len(tok(tag, add_special_tokens=False)["input_ids"]) == 1, tag
    answer = tok("<answer>Not Recommend</answer>", add_special_tokens=False)["input_ids"]
    assert len(answer) <= 5
    assert 900 <= len(tok) <= 2100


def test_loads_offline_with_autotokenizer_in_fresh_process():
    code = ("from transformers import AutoTokenizer; import sys; "
            "t = AutoTokenizer.from_pretrained(sys.argv[1]); "
            "print(t.decode(t('Candidate Item: x', add_special_tokens=False)['input_ids']))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code, str(world_tokenizer_dir())], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Candidate Item: x"


def test_training_is_deterministic(tmp_path):
    toklib.train_world_tokenizer(world_benchmark(), tmp_path / "again", vocab_size=1024)
    for name in ("tokenizer.json", "spm.model"):
        assert (tmp_path / "again" / name).read_bytes() == (world_tokenizer_dir() / name).read_bytes(), name
    vocab = json.loads((tmp_path / "again" / "tokenizer.json").read_text())["model"]["vocab"]
    assert "▁Vortex" in vocab and "<0x0A>" in vocab  # whole words learned; bytes as fallback
