import pathlib
import sys

here = pathlib.Path(__file__).parent
sys.path.insert(0, str(here))
sys.path.insert(0, str(here.parent / "data"))  # _data_world: the small synthetic world + tokenizer
