"""The backend smoke check on CPU with an fsdp:2 mesh: every part passes, the last line is the JSON report;
a mesh that does not fit the devices fails the check with the reason."""
import json

import pytest

from r2rank_jax.tools import smoke


@pytest.mark.slow
def test_smoke_check_passes_on_cpu_with_an_fsdp_mesh(tmp_path, capsys):
    assert smoke.main(["--mesh=fsdp:2", f"--workdir={tmp_path}"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["ok"] is True and report["backend"] == "cpu" and report["devices"] == 8
    assert report["parts"]["mesh"]["shape"] == {"data": 1, "fsdp": 2, "tensor": 1}
    for name in ("logits", "greedy", "sft_step", "rl_step", "checkpoint"):
        assert report["parts"][name]["ok"] is True, (name, report["parts"][name])
        assert report["timings"][name] > 0
    assert report["parts"]["logits"]["max_abs_logit_diff"] <= 1e-4
    assert report["parts"]["greedy"]["agreement"] == 1.0
    assert report["parts"]["checkpoint"]["same_shardings"] is True


def test_a_mesh_that_does_not_fit_fails_the_check(tmp_path, capsys):
    assert smoke.main(["--mesh=fsdp:16", f"--workdir={tmp_path}"]) == 1
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["ok"] is False and "error" in report["parts"]["mesh"]
    assert "16" in report["parts"]["mesh"]["error"]
