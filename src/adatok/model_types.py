"""Static types of what ``adatok.create_model`` / ``adatok.load`` return, for type checkers.

They build an ``nn.Module`` whose class depends on the preset name, known only at run time, so
their declared return type is this ``Protocol``: the tokenizer interface (``adatok.interface.Tokenizer``,
the runtime ABC TiTok, ALIT, the MaskGIT-VQGAN and the KL-VAE implement: ``encode -> Tokens``,
``decode``, ``decode_ids``, ...), the hub methods and the ``nn.Module`` methods callers use, typed;
anything model-specific (ALIT's ``select``/``rollout``, a generator's ``generate``, ``config``, ...)
is ``Any``, as it is on an ``nn.Module``-typed value. The ABC itself cannot be the return type: a
generator is not a tokenizer, and ``alit.rollout(...)`` would type as ``nn.Module.__getattr__``'s
``Tensor | Module``, which mypy rejects as "not callable". Purely static: nothing here runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Protocol

import torch

from .types import Tokens


class LoadedModel(Protocol):
    """A model built by adatok (an ``nn.Module``); for tokenizers the calls below are what they mean."""

    @property
    def image_size(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    @property
    def num_tokens(self) -> int: ...

    @property
    def codebook_size(self) -> int | None: ...

    @property
    def discrete(self) -> bool: ...

    def encode(self, images: torch.Tensor, *args: Any, **kwargs: Any) -> Tokens:
        """Images ``B x 3 x H x W`` in [0, 1] -> ``Tokens``."""
        ...

    def decode(self, tokens: Tokens, clamp: bool = True) -> torch.Tensor:
        """``Tokens`` -> images ``B x 3 x H x W``."""
        ...

    def decode_ids(self, ids: torch.Tensor | None, lengths: torch.Tensor | None = None,
                   clamp: bool = True) -> torch.Tensor:
        """Padded ids ``B x L`` (+ ``lengths``) -> images (``None``, a continuous tokenizer's ids,
        raises InputError)."""
        ...

    def save_pretrained(self, save_directory: Any, **kwargs: Any) -> Path:
        """config.json + model.safetensors + a README.md model card (adatok/hub_mixin.py)."""
        ...

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str: ...

    def eval(self) -> LoadedModel: ...

    def train(self, mode: bool = True) -> LoadedModel: ...

    def to(self, *args: Any, **kwargs: Any) -> LoadedModel: ...

    def requires_grad_(self, requires_grad: bool = True) -> LoadedModel: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    def __getattr__(self, name: str) -> Any: ...
