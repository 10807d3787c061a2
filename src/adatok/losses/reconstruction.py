"""Pixel reconstruction losses and the proxy-code cross-entropy of TiTok stage 1 / ALIT stage 1.

Both run in float32 whatever the autocast dtype of their inputs, so a bf16/fp16 forward does not
turn the loss itself into a low-precision reduction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adatok.errors import InputError

__all__ = ["reconstruction_loss", "proxy_code_loss"]


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Mean absolute (``"l1"``) or squared (``"l2"``) error over every element -> scalar (float32).

    TiTok stage 2 uses ``"l2"`` (weight 1.0), ALIT stage 2 uses ``"l1"``.
    """
    if pred.shape != target.shape:
        raise InputError(f"reconstruction_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                         "must have the same shape")
    with torch.autocast(device_type=pred.device.type, enabled=False):
        pred, target = pred.float(), target.float()
        if kind == "l1":
            return F.l1_loss(pred, target)
        if kind == "l2":
            return F.mse_loss(pred, target)
    raise InputError(f"reconstruction_loss: kind={kind!r} is not supported; use 'l1' or 'l2'")


def proxy_code_loss(logits: torch.Tensor, codes: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over the V classes at every position, averaged over positions and batch.

    Shapes:
        logits  B x V x h x w  (or B x V x N), any float dtype; computed in float32
        codes   B x (h*w)      (or B x h x w) int64 teacher ids, row-major like the logits
    TiTok stage 1: V = 1024, h = w = 16, no label smoothing. ALIT stage 1 also uses plain CE (its
    label-smoothing term is computed and discarded), so keep ``label_smoothing=0`` to reproduce it.
    """
    if logits.dim() < 3:
        raise InputError(f"proxy_code_loss: logits must be B x V x h x w or B x V x N, got {tuple(logits.shape)}")
    b, v = logits.shape[:2]
    n = logits[0, 0].numel()
    if codes.shape[0] != b or codes[0].numel() != n:
        raise InputError(f"proxy_code_loss: codes {tuple(codes.shape)} do not match logits {tuple(logits.shape)}; "
                         f"expected B x {n} ids")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return F.cross_entropy(logits.float().reshape(b, v, n), codes.reshape(b, n).long(),
                               label_smoothing=float(label_smoothing))
