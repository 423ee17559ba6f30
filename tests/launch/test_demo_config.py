"""configs/demo.py (README's main command): its literal `sft.shared_prefix` is the prefix its SFT prompts share.

The SFT stage refuses a corpus whose prompts do not all begin with the same `sft.shared_prefix` tokens (naming
the line), so an edit of the instructions or of the world's tokenizer would stop README's command at its SFT
stage; this catches it first. The number is exact: a longer shared prefix would be left unused."""
import os
import pathlib

import pytest
from transformers import AutoTokenizer

from r2rank_jax import launch
from r2rank_jax.config import load_config_file
from r2rank_jax.train import sft_data

DEMO = pathlib.Path(__file__).resolve().parents[2] / "configs" / "demo.py"


@pytest.mark.slow
def test_demo_shared_prefix_is_what_every_demo_prompt_shares(tmp_path):
    cfg = load_config_file(DEMO)
    for stage in ("prepare", "synthesize"):
        launch.main([f"--config={DEMO}", f"--workdir={tmp_path}", stage])
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "data" / "tokenizer"))
    examples = sft_data.load_corpus(tmp_path / "teacher" / "corpus.jsonl", tok)
    assert len(examples) > 1000
    shared = len(os.path.commonprefix([e.prompt_ids for e in examples]))
    assert cfg.sft.shared_prefix == shared == 122
    assert min(len(e.prompt_ids) for e in examples) > shared
    sft_data.check_shared_prefix(examples, cfg.sft.shared_prefix)     # what the SFT stage checks: no error
    with pytest.raises(sft_data.DataError, match=rf"sft.shared_prefix={shared + 1}: this prompt"):
        sft_data.check_shared_prefix(examples, shared + 1)
