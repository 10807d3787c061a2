"""Rate–distortion optimal per-image lengths for a prefix tokenizer (a Lagrangian allocation).

``select(images, "psnr", t)`` gives each image the shortest prefix that reaches a quality target:
it equalises quality, so cluttered images get many tokens and simple ones few (the length follows
image complexity). That is not the allocation that maximises the *mean* per-image PSNR at a given
mean token count: a token buys more dB on a simple image (a steep curve) than on a cluttered one
(a flat curve), so the mean-PSNR optimum moves tokens towards simple images. The classic answer
(Everett 1963; Shoham & Gersho 1988, "Efficient bit allocation for an arbitrary set of
quantizers") is to give every image the length that maximises ``PSNR_i(L) - lam * L``: for each
slope ``lam`` (dB per token) the result lies on the convex hull of the set's mean rate–distortion
curve, and no other allocation with the same mean length has a higher mean PSNR.

With a prefix tokenizer the whole curve of every image costs one encode and one batched decode of
``B x T`` images (``sweep``), so the rule is exact, not a search. ``lam`` trades tokens for dB:
0 gives every image its best length; large values give every image the shortest one.
"""

from __future__ import annotations

import torch

from ...checks import check_images
from ...errors import InputError
from ...types import Selection
from .model import PrefixTiTok


def per_image_psnr(recon: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, peak 1) of each image of ``recon`` (... x B x 3 x H x W) against ``images``."""
    mse = (recon.float() - images.float()).pow(2).flatten(-3).mean(-1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


@torch.no_grad()
def select_lagrangian(model, images: torch.Tensor, lam: float, *, return_images: bool = True) -> Selection:
    """Per image, the allowed length maximising ``PSNR(L) - lam * L`` (ties: the shorter length).

    ``model`` is a prefix tokenizer (``tokenizers/prefix``: any prefix of its tokens decodes);
    ``lam`` >= 0 in dB per token. ``errors`` of the result holds ``-(PSNR(L) - lam * L)`` at every
    allowed length (B x T, lower is better, the quantity minimised); ``iterations_run`` is 1 (one
    batched decode)."""
    if not isinstance(model, PrefixTiTok):
        raise InputError(f"select_lagrangian needs a prefix tokenizer (any prefix of its tokens decodes), not "
                         f"{type(model).__name__}: use its select() instead")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
        raise InputError(f"lam (dB per token) must be a number >= 0, got {lam!r}")
    check_images(images, model.image_size)
    sweep = model.sweep(images)
    lengths = torch.tensor(sweep.lengths, device=images.device, dtype=torch.float32)
    gain = per_image_psnr(sweep.images, images) - lam * lengths[:, None]  # T x B
    # argmax with ties to the shortest: torch.argmax returns the first maximum along dim 0
    best = gain.argmax(dim=0)
    chosen = lengths[best].long()
    tokens = model.encode(images, lengths=chosen)
    out = sweep.images[best, torch.arange(images.shape[0], device=images.device)] if return_images else None
    return Selection(tokens=tokens, images=out, errors=-gain.T.contiguous(), iterations_run=1)
