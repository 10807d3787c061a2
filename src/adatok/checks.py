"""Input checks shared by every tokenizer: one-line errors before any work starts."""

from __future__ import annotations

import torch

from .errors import InputError
from .tracing import is_tracing


def check_images(images, image_size: int, model: torch.nn.Module | None = None) -> torch.Tensor:
    """Validate a ``B x 3 x H x W`` float batch in [0, 1] of the model's size; return it.

    With ``model``, images of another float type than its weights' (float64 images into a float32
    model) are converted to it (outside autocast), instead of failing in the first conv. An empty
    batch (B = 0) passes: the model returns empty results.

    Costs one host sync (min/max/finite), once per call, never inside a loop; skipped while
    ``torch.compile`` / ``torch.export`` trace the call (shapes and dtype are still checked).
    """
    if not isinstance(images, torch.Tensor):
        raise InputError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim == 3 and images.shape[0] == 3:
        raise InputError(
            f"images must be B x 3 x H x W, got one image of shape {tuple(images.shape)}: use images.unsqueeze(0)"
        )
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"images must be B x 3 x H x W (RGB), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        hint = ": use images.float() / 255" if images.dtype == torch.uint8 else ""
        raise InputError(f"images must be a float tensor in [0, 1], got {images.dtype}{hint}")
    if tuple(images.shape[-2:]) != (image_size, image_size):
        raise InputError(
            f"this model takes {image_size}x{image_size} images, got {images.shape[-2]}x{images.shape[-1]}: "
            f"resize + center-crop first (adatok.data.load_image does)"
        )
    if model is not None:
        images = _as_weight_dtype(images, model)
    if is_tracing():  # value checks need a host sync: eager only (adatok/tracing.py)
        return images
    if images.shape[0] == 0:
        return images
    stats = torch.stack([images.isfinite().all().float(), images.amin().float(), images.amax().float()])
    finite, lo, hi = stats.tolist()
    if not finite:
        raise InputError("images contain NaN or infinite values")
    if lo < -1e-3 or hi > 1 + 1e-3:
        if hi > 2:
            hint = ": looks like 0..255, divide by 255"
        elif lo < -0.5:
            hint = ": looks like [-1, 1], use (images + 1) / 2"
        else:
            hint = ": clamp to [0, 1]"
        raise InputError(f"images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}")
    return images


def _as_weight_dtype(images: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    if weight is None or images.dtype == weight.dtype or torch.is_autocast_enabled(images.device.type):
        return images
    return images.to(weight.dtype)


def check_ids(ids, num_tokens: int | None = None) -> torch.Tensor:
    """Validate token ids: an integer ``B x L`` tensor (``B x 1 x L`` accepted, as the official
    code returns it). Range is checked by the quantizer, which knows the codebook size."""
    if not isinstance(ids, torch.Tensor):
        raise InputError(f"token ids must be a torch.Tensor, got {type(ids).__name__}")
    if ids.ndim == 3 and ids.shape[1] == 1:
        ids = ids[:, 0]
    if ids.ndim != 2:
        raise InputError(f"token ids must be B x L, got shape {tuple(ids.shape)}")
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise InputError(f"token ids must be an integer tensor, got {ids.dtype}")
    if num_tokens is not None and ids.shape[1] != num_tokens:
        raise InputError(f"this model reads {num_tokens} tokens per image, got {ids.shape[1]}")
    return ids


def check_full_lengths(lengths, ids: torch.Tensor) -> None:
    """A fixed-length tokenizer reads every id: ``lengths`` (if given) must equal ``L`` everywhere."""
    if lengths is None:
        return
    if not isinstance(lengths, torch.Tensor) or lengths.shape != (ids.shape[0],):
        raise InputError(f"lengths must be a tensor of shape ({ids.shape[0]},), one per row of ids")
    if is_tracing():  # a value check: eager only
        return
    if bool((lengths != ids.shape[1]).any()):
        raise InputError(
            f"this is a fixed-length tokenizer: every image has {ids.shape[1]} tokens, got lengths {lengths.tolist()}"
        )


def check_lengths(lengths, batch: int, width: int, allowed, device=None) -> torch.Tensor:
    """Per-image token counts of ``B x width`` padded tokens: an integer tensor of shape ``(B,)``,
    each one of ``allowed`` and at most ``width``. ``None`` means every row is full (``width``,
    which must then be allowed)."""
    if lengths is None:
        lengths = torch.full((batch,), width, dtype=torch.long, device=device)
    if not isinstance(lengths, torch.Tensor) or lengths.shape != (batch,) or lengths.is_floating_point():
        raise InputError(f"lengths must be an integer tensor of shape ({batch},)")
    got = set(lengths.tolist())
    if got and (not got <= set(allowed) or max(got) > width):  # (an empty batch has no lengths)
        raise InputError(f"lengths {sorted(got)}: each must be one of {sorted(allowed)} and at most the "
                         f"{width} tokens given per row")
    return lengths.long()


def check_ids_in_range(ids: torch.Tensor, lengths: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """The ``B x L`` mask of each row's first ``lengths`` ids, after checking those lie in
    ``[0, codebook_size)`` (the padding beyond them is never read)."""
    valid = torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None]
    picked = ids[valid]
    if picked.numel() and bool(((picked < 0) | (picked >= codebook_size)).any()):
        raise InputError(f"ids out of range: the first `lengths` ids of each row must lie in [0, {codebook_size})")
    return valid
