"""One training loop for every task: DDP under torchrun, AMP, EMA, exact resume.

Entry points: ``adatok train CONFIG [key=value ...]`` and ``torchrun --nproc_per_node N -m adatok
train CONFIG``; from Python, ``adatok.train.run(config_dict_or_path, overrides)``.
"""

from .config import RunConfig, load_run_config
from .loop import run

__all__ = ["RunConfig", "load_run_config", "run"]
