"""Methods: R2Rank and the LLM baselines, each a class registered with `registry.register` behind the
`protocol.Method` protocol (its training stages and scorers), on the shared run machinery
(r2rank_jax.run). The launcher is their only dispatcher; see protocol.py for the stage signatures.

R2Rank: `methods/r2rank/`. Baselines: TALLRec (`tallrec`), Prompt4NR (`prompt4nr`), R²ec (`r2ec`),
R2Rec (`r2rec`), zero-shot pointwise (`zero_shot`). Every method is evaluated on the same saved
candidate lists; a baseline run joins an R2Rank table with `--config.eval.compare=NAME=WORKDIR`.
"""
