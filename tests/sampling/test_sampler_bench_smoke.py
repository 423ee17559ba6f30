"""The rollout benchmark entry point runs end to end on a tiny random model (format of the last line)."""
import json
import re

import pytest
from hf_tiny import save_hf_model

from r2rank_jax.bench import rollout


# K=3 rows cannot be split over 2 devices: 'auto' decodes on one; K=4 splits (tests run with 8 CPU devices).
@pytest.mark.parametrize("k, devices", [(3, 1), (4, 2)])
def test_rollout_bench_smoke(tmp_path, capsys, k, devices):
    save_hf_model("qwen2_tied_gqa", tmp_path / "model")
    out = tmp_path / "report.json"
    assert rollout.main(["--hf_dir", str(tmp_path / "model"), "--prompts", "synthetic", "--k", str(k), "--users", "2",
                         "--new_tokens", "4", "--prefix_len", "12", "--suffix_len", "5", "--threads", "1",
                         "--repeats", "2", "--out", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"rollout tokens/s: jax=\d+\.\d hf=\d+\.\d ratio=\d+\.\d\d", last), last
    report = json.loads(out.read_text())
    assert report["jax"]["tokens"] == report["hf"]["tokens"] == 2 * 2 * k * 4   # 2 passes x 2 users x K x N
    assert report["jax"]["decode_devices"] == devices
    assert len(report["passes"]) == 2 and len(report["jax"]["per_batch"]) == 4
    x, y = report["jax"]["tokens_per_s"], report["hf"]["tokens_per_s"]
    ratios = [p["ratio"] for p in report["passes"]]   # same tokens per pass: the overall ratio is their mediant
    assert min(ratios) * (1 - 1e-9) <= x / y <= max(ratios) * (1 + 1e-9)
