"""Generation over 1D tokens: MaskGIT generators (official TiTok BERT / UViT generators, tiny
presets, a length-aware variant), the sampling loop, and the generator + tokenizer pipeline."""

from .config import ARCHS, SCHEDULES, MaskGITConfig, SamplingConfig
from .maskgit import Generated, GeneratorOutput, MaskGIT
from .pipeline import check_pair, generate_images
from .sampling import guidance_scale, maskgit_sample
from . import presets  # noqa: F401  (registers the family and presets)

__all__ = [
    "ARCHS", "SCHEDULES", "MaskGITConfig", "SamplingConfig", "Generated", "GeneratorOutput", "MaskGIT",
    "check_pair", "generate_images", "guidance_scale", "maskgit_sample",
]
