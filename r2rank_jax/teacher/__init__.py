"""Teacher rationales for the SFT warm start (docs/teacher.md).

- `synthesize`: the loop (pairs → teacher → correctness filter → corpus) and its CLI;
  `stage.run_stage` is the launcher's entry; `ledger`: corpus, ``done.jsonl``, ``stats.json``;
- teachers (`base.Teacher`): `http_teacher` over `openai_client` (any OpenAI-compatible endpoint),
  `local` (a JAX model through a `generator.Generator`), `scripted` (synthetic world only);
- `pairs`: which (user, candidate) pairs and their prompts; `prompts`: the rationalization hint;
- `factory`: `TeacherSpec` → teacher; `local_model`: HF/GGUF/tiny-random model loading (also used by `serve`).
"""
