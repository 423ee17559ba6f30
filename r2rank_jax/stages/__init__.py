"""Pipeline stages run by the launcher: prepare → synthesize → sft → rl → eval."""
