"""The launcher tests share the session's `debug_run` (tests/conftest.py)."""
