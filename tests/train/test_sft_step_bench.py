"""The SFT step benchmark runs end to end on a small batch; both layer loops and dense attention compute the same loss."""
import re

from r2rank_jax.bench import sft_step


def test_sft_step_bench_smoke(capsys):
    assert sft_step.main(["--batch", "2", "--prompt", "24", "--response", "8", "--vocab", "100",
                          "--repeats", "2", "--iters", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    scan, unrolled, dense = map(float, re.fullmatch(r"first-step loss: scan=(\S+) unrolled=(\S+) dense=(\S+)",
                                                    lines[0]).groups())
    assert abs(scan - unrolled) < 1e-5 and abs(dense - unrolled) < 1e-5 and 3.0 < scan < 6.0   # ~log(100) at init
    assert re.fullmatch(r"sft_step causal blocks s: dense=\d+\.\d{3} blocked=\d+\.\d{3} ratio=\d+\.\d\d", lines[-2])
    assert re.fullmatch(r"sft_step s: scan=\d+\.\d{3} unrolled=\d+\.\d{3} ratio=\d+\.\d\d", lines[-1]), lines[-1]
