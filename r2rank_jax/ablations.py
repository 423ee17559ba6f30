"""The paper's ablations as launcher runs, one workdir each, and the main run's comparison table.

    python -m r2rank_jax.ablations --config=configs/demo.py --workdir=/tmp/r2rank_demo [--run] [--config.F=V ...]

prints (with --run: runs, in order) the launcher commands

1. one run per ablation:  ``launch --config=C <ablation overrides> --workdir=W_<name> all``
2. the main run, with every ablation in its results table:
                          ``launch --config=C --config.eval.compare=mlp_only=W_mlp_only,... --workdir=W all``

(When the main run exists already, replace its ``all`` by ``eval``.)

Extra ``--config.F=V`` overrides go into every command. The ablations (`ABLATIONS`):

the paper's (Tables 3 and 5), each to be compared with the run named in `PAIRED_WITH`:

- ``rl_only`` (RL-only): no SFT, RL starts from the base model (``sft.steps=0``; synthesis is skipped too);
- ``mlp_only`` (MLP-only, Table 3): the *base* model frozen, no SFT, RL trains the scoring head only
  (``sft.steps=0 rl.freeze_llm=true``); compared with RL-only;
- ``no_cot`` (without CoT, Table 5): the same SFT as the main run; only the RL and evaluation prompts ask
  for the decision alone (``rl.prompt_variant=no_cot``, short rollouts); compared with the main run;

and two extras of ours (`EXTRAS`, not the paper's definitions): ``mlp_only_sft`` (the head trained by RL on
the frozen *SFT* model) and ``no_cot_sft`` (decision-only prompts in SFT too).

An ablation run evaluates only its own RL checkpoint (``eval.methods=r2rank``, no baselines); the main
eval checks that each one used the identical users and candidate lists (`r2rank_jax.eval.compare`).
"""
from __future__ import annotations

import argparse
import shlex
import sys

from r2rank_jax import runner

ABLATIONS: dict[str, tuple[str, ...]] = {
    "rl_only": ("sft.steps=0",),
    "mlp_only": ("sft.steps=0", "rl.freeze_llm=true"),
    "no_cot": ("rl.prompt_variant=no_cot", "rl.max_new_tokens=12", "eval.max_new_tokens=12"),
}
EXTRAS: dict[str, tuple[str, ...]] = {
    "mlp_only_sft": ("rl.freeze_llm=true",),
    "no_cot_sft": ("data.prompt_variant=no_cot", "rl.max_new_tokens=12", "eval.max_new_tokens=12"),
}
# The paper's comparisons: ablation -> the run it is compared with ("main" = the full R2Rank run).
PAIRED_WITH = {"rl_only": "main", "mlp_only": "rl_only", "no_cot": "main"}
ABLATION_EVAL: tuple[str, ...] = ("eval.methods=r2rank", "eval.baselines=")


def ablation_workdir(workdir: str, name: str) -> str:
    return f"{workdir.rstrip('/')}_{name}"


def overrides(name: str) -> list[str]:
    """``--config.F=V`` arguments of ablation `name`."""
    known = {**ABLATIONS, **EXTRAS}
    if name not in known:
        raise KeyError(f"unknown ablation {name!r}; known: {sorted(known)}")
    return [f"--config.{o}" for o in (*known[name], *ABLATION_EVAL)]


def compare_override(workdir: str, names=tuple(ABLATIONS)) -> str:
    return "--config.eval.compare=" + ",".join(f"{n}={ablation_workdir(workdir, n)}" for n in names)


def commands(config: str, workdir: str, extra: list[str]) -> list[list[str]]:
    """Launcher argument lists: each ablation's run, then the main run with the comparison."""
    base = [f"--config={config}", *extra]
    out = [[*base, *overrides(n), f"--workdir={ablation_workdir(workdir, n)}", "all"] for n in ABLATIONS]
    out.append([*base, compare_override(workdir), f"--workdir={workdir}", "all"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r2rank_jax.ablations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True, help="the main run's workdir; ablations go to WORKDIR_<name>")
    parser.add_argument("--run", action="store_true", help="run the commands instead of printing them")
    args, extra = runner.parse_args(parser, argv)
    for argv_ in commands(args.config, args.workdir, extra):
        print("python -m r2rank_jax.launch " + " ".join(shlex.quote(a) for a in argv_), flush=True)
        if args.run:
            from r2rank_jax import launch

            launch.main(argv_)
    return 0


if __name__ == "__main__":
    sys.exit(main())
