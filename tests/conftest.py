import os
import sys
from pathlib import Path

# Tests never touch the network: fail fast instead of retrying the hub for ~47 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# tests/reference/ holds the independent oracles; make `reference` importable.
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
