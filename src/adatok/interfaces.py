"""Static types of what ``adatok.create_model`` / ``adatok.load`` return, for type checkers.

They build an ``nn.Module`` whose class depends on the preset name, known only at run time, so
their declared return type is this ``Protocol``: the image-tokenizer interface every adatok
tokenizer has (DESIGN §12: ``encode -> Tokens``, ``decode``, ``decode_ids``) and the ``nn.Module``
methods callers use, typed; anything model-specific (``select``, ``rollout``, ``generate``,
``config``, ...) is ``Any``, as it is on an ``nn.Module``-typed value. Without it, mypy reads
``tok.encode`` as ``nn.Module.__getattr__``'s ``Tensor | Module`` and rejects ``tok.encode(x)``.
Purely static: nothing here runs or is checked at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Protocol

import torch

from .types import Tokens


class Tokenizer(Protocol):
    """A model built by adatok (``nn.Module``); for tokenizers the calls below are what they mean."""

    @property
    def image_size(self) -> int: ...

    @property
    def num_tokens(self) -> int: ...

    def encode(self, images: torch.Tensor, *args: Any, **kwargs: Any) -> Tokens:
        """Images ``B x 3 x H x W`` in [0, 1] -> ``Tokens``."""
        ...

    def decode(self, tokens: Tokens | torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``Tokens`` -> images ``B x 3 x H x W``."""
        ...

    def decode_ids(self, ids: torch.Tensor | None, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Token ids ``B x L`` -> images (``None``, a continuous tokenizer's ids, raises InputError)."""
        ...

    def save_pretrained(self, save_directory: Any, **kwargs: Any) -> Path:
        """config.json + model.safetensors + a README.md model card (adatok/hub_mixin.py)."""
        ...

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str: ...

    def eval(self) -> Tokenizer: ...

    def train(self, mode: bool = True) -> Tokenizer: ...

    def to(self, *args: Any, **kwargs: Any) -> Tokenizer: ...

    def requires_grad_(self, requires_grad: bool = True) -> Tokenizer: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    def __getattr__(self, name: str) -> Any: ...
