"""Length-aware MaskGIT: generating codes whose length depends on the content (beyond the papers).

Adaptive tokenizers (ALIT) give every image its own number of tokens: ids are a padded ``B x K``
tensor plus ``lengths``. A MaskGIT that only fills K fixed slots cannot produce such codes, and
sampling "the maximum, then truncate" would throw away what the tokenizer learned about how many
tokens an image needs. The length-aware generator models the pair (length, ids):

    p(length, ids | class) = p(length | class) * p(ids | length, class)

**Sequence.** ``[class, LENGTH, t_1 .. t_K]``. LENGTH is one token per allowed length (the
``lengths`` of the config, e.g. 32, 64, ..., 256 for ALIT) or [LENGTH MASK] when unknown;
positions past the sample's length hold [PAD]. The embeddings of these extra ids sit after the
official token space, so a fixed-length model is exactly the official layout.

**Heads.** The image head (logits over the codebook at the K image positions) and a length head
(logits over the N allowed lengths) read at the LENGTH position.

**Training** (``length_aware_inputs``): image tokens are masked with the usual arccos schedule,
but only among the sample's valid positions (the count ``n = round(L r)`` uses the sample's own
length L); [PAD] positions are never masked and carry no loss. For a share ``hide_prob`` of the
samples the LENGTH token is replaced by [LENGTH MASK] and every image position by [MASK] -- the
exact state sampling starts from -- and those samples train only the length head (cross-entropy
against the true length); the others train only the image head, given their true length. Class
dropout applies to both, so the length also gets classifier-free guidance's unconditional branch.

**Sampling** (``MaskGIT.generate``): one forward pass in the start state draws each sample's length
from the length head (``sampling.length_temperature``, 1 = the learned distribution; lengths can
also be forced). Then the standard MaskGIT loop runs with the length token set, [PAD] fixed past
each length (confidence +inf, never re-masked), and the re-masking schedule computed per sample
from its own length: ``mask_len = floor(L * acos(ratio) / (pi/2))``. All of it stays batched:
samples of different lengths share every forward pass.

Why a length token rather than an end-of-sequence token: MaskGIT decodes positions in parallel and
out of order, so an EOS could be predicted at several places or before tokens already committed
after it; a length fixed first makes every step well defined, gives an explicit, calibrated
distribution over lengths (testable: trained on a 3:1 mix of two lengths, it samples about 3:1),
and lets a user ask for a given length.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import InputError
from .config import MaskGITConfig


def length_bins(lengths: torch.Tensor, config: MaskGITConfig) -> torch.Tensor:
    """Token counts ``B`` -> indices into ``config.lengths`` (``B``). Counts must be in the table
    (check once with :func:`check_lengths`; no host sync here)."""
    table = torch.tensor(config.lengths, device=lengths.device)
    return (lengths.unsqueeze(1) == table).long().argmax(dim=1)


def check_lengths(lengths: torch.Tensor, config: MaskGITConfig, where: str) -> None:
    """One-line error unless every count in ``lengths`` is one of ``config.lengths``."""
    table = torch.tensor(config.lengths)
    bad = sorted(set(torch.unique(lengths).tolist()) - set(table.tolist()))
    if bad:
        raise InputError(f"{where}: token counts {bad[:6]} are not among the generator's lengths {config.lengths}")


def length_aware_inputs(ids: torch.Tensor, lengths: torch.Tensor, masked: torch.Tensor, config: MaskGITConfig,
                        hide_prob: float, generator: Optional[torch.Generator] = None):
    """Training inputs of a length-aware model.

    Shapes: ids, masked ``B x K``; lengths ``B``. Returns ``(inputs B x K, length_in B, bins B,
    hidden B bool, valid B x K bool)``: ``length_in`` is the bin fed to the model (-1 = hidden)."""
    b, k = ids.shape
    valid = torch.arange(k, device=ids.device) < lengths.unsqueeze(1)
    bins = length_bins(lengths, config)
    inputs = torch.where(masked, torch.full_like(ids, config.mask_id), ids)
    inputs = torch.where(valid, inputs, torch.full_like(ids, config.pad_id))
    hidden = torch.rand(b, device=ids.device, generator=generator) < hide_prob
    inputs = torch.where(hidden.unsqueeze(1), torch.full_like(ids, config.mask_id), inputs)
    length_in = torch.where(hidden, torch.full_like(bins, -1), bins)
    return inputs, length_in, bins, hidden, valid
