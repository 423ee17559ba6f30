import pathlib
import sys

# hf_tiny (tiny random transformers checkpoints) lives with the model tests.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "models"))
