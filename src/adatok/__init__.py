"""adatok: adaptive image tokens — TiTok, ALIT and ImagePiece in one PyTorch library.

Public API::

    import adatok
    adatok.list_models()                      # preset names
    cfg = adatok.get_config("titok_s128")      # a frozen dataclass
    model = adatok.create_model("titok_tiny")  # random weights
    tok = adatok.load("titok_l32", weights="tokenizer_titok_l32.bin")
    tokens = tok.encode(images)                # images: B x 3 x H x W float in [0, 1]
    recon = tok.decode(tokens)                 # or tok.decode_ids(tokens.ids)
    adatok.save(tok, "my_tokenizer/")
"""

from .errors import AdatokError, CheckpointError, ConfigError, ImageLoadError, InputError
from .hub import load, load_weights, save
from .registry import create_model, get_config, list_models
from .types import Tokens, TokenizerOutput
from . import models as _models  # noqa: E402,F401  registers every model package's presets

__version__ = "0.1.0"

__all__ = [
    "AdatokError", "CheckpointError", "ConfigError", "ImageLoadError", "InputError",
    "create_model", "get_config", "list_models", "load", "load_weights", "save", "Tokens", "TokenizerOutput",
]
