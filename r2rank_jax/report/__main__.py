"""CLI: python -m r2rank_jax.report --workdir W [--users N] [--out FILE]

Writes one self-contained HTML file (default WORKDIR/eval/report.html): the results table, the training
curves, the analyses' plots, N sampled test users with every candidate's rationale, decision, score and
rank under each LLM method, and the resolved config. Reads only the workdir; prints the path.
"""
from __future__ import annotations

import argparse
import sys

from r2rank_jax.report.build import DEFAULT_USERS, write_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m r2rank_jax.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="a launcher workdir after its eval stage")
    p.add_argument("--users", type=int, default=DEFAULT_USERS, help=f"sampled users shown (default {DEFAULT_USERS})")
    p.add_argument("--out", default=None, help="output file (default WORKDIR/eval/report.html)")
    args = p.parse_args(argv)
    try:
        path = write_report(args.workdir, args.users, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
