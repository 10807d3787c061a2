"""Every model package, imported once so that its families and presets register (as timm's
``models/__init__.py``). ``import adatok`` imports this module; ``adatok.registry`` imports none."""

from .pixel import presets as _pixel  # noqa: F401  MaskGIT-VQGAN, KL-VAE
from .tokenizers.titok import presets as _titok  # noqa: F401
from .tokenizers.alit import presets as _alit  # noqa: F401
from .tokenizers.prefix import presets as _prefix  # noqa: F401  prefix TiTok (tail-token drop)
from .generators import presets as _generators  # noqa: F401  MaskGIT over 1D tokens
from .reduction import presets as _reduction  # noqa: F401  token-reduced timm ViTs (ImagePiece)
