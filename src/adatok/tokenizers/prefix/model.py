"""Prefix TiTok: a TiTok trained so that any prefix of its 1D tokens decodes.

Training keeps, for each *sample*, its first k tokens (k drawn per sample among ``allowed_lengths``
by ``config.train_lengths``) and replaces the rest by one **learned mask token** — One-D-Piece's
"tail token drop" (Miwa et al. 2025) and FlexTok's nested dropout (Bachmann et al. 2025) on a TiTok
(Yu et al. 2024). We chose a mask token over dropping the tail with an attention mask: the decoder
then always reads ``num_tokens`` latent slots, so one batched decode handles images of mixed
lengths (a sweep of every length, or a selection search, is a single decoder call per step), and the
TiTok decoder is used unchanged (its positional embeddings still say which slot is which). The mask
token lives in code space (``token_dim``) and goes through the decoder's input projection like a code.

Built by composition: ``self.titok`` is a plain ``TiTok`` (so its state dict is ``titok.*``: the
shipped ``titok_default`` warm-starts it), used only through its public parts — ``encoder``,
``latent_tokens``, ``quantizer`` (and ``quantizer.lookup``) and ``decode``.

Per-image selection (``select``) encodes once, then bisects over the allowed lengths: each round
decodes, in one batch, every image still searching at the middle of its remaining interval. It
assumes the criterion's ``met`` is monotone in the length (once met, met at every longer length);
then it returns exactly what the exhaustive rule returns (the shortest length that meets it, else
the lowest error), with ``ceil(log2(T + 1))`` decodes instead of T. Where the error is not monotone
the search may return a longer length than the first one that meets the criterion (it never looks
left of a met length it found): see ``select``. A learned length predictor (``predict_lengths``,
a KARL/STAT-style single pass: no decode at all to choose) is an optional small head on the encoder
output.

Images are ``B x 3 x H x W`` float in [0, 1]; ids are ``B x max_tokens`` int64 with ``PAD_ID``
beyond each image's ``lengths``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ...checks import check_ids, check_ids_in_range, check_images, check_lengths
from ...errors import ConfigError, InputError
from ...interface import PAD_ID, AdaptiveTokenizer
from ...types import RateSweep, Selection, Tokens, TokenizerOutput
from ..selection import IterationStats, TokenConfidence, get_criterion
from ..titok.model import TiTok
from .config import PrefixConfig


class LengthPredictor(nn.Module):
    """For each allowed length, the logit that the criterion is met there, from the encoder output
    (pre-quantization latents ``B x K x d``, read in token order) and the target threshold.

    ``predict``: the first length whose probability reaches 1/2 (the criterion's own rule: the
    shortest length that meets it), else the longest. Trained by ``fit_length_predictor``; the
    threshold is normalised with the ``thr_mean`` / ``thr_std`` buffers set there."""

    def __init__(self, num_tokens: int, token_dim: int, num_lengths: int, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(num_tokens * token_dim, elementwise_affine=False)
        self.net = nn.Sequential(nn.Linear(num_tokens * token_dim + 1, width), nn.GELU(), nn.Linear(width, width),
                                 nn.GELU(), nn.Linear(width, num_lengths))
        self.register_buffer("thr_mean", torch.zeros(()))
        self.register_buffer("thr_std", torch.ones(()))
        self.register_buffer("trained", torch.zeros((), dtype=torch.bool))

    def forward(self, latents: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        t = ((threshold.float() - self.thr_mean) / self.thr_std).reshape(-1, 1).to(latents.device)
        return self.net(torch.cat([self.norm(latents.flatten(1).float()), t.expand(latents.shape[0], 1)], dim=1))

    @staticmethod
    def first_met(logits: torch.Tensor) -> torch.Tensor:
        """B x T logits -> index of the first length predicted met (else the last), B int64."""
        met = logits >= 0
        met[:, -1] = True
        return met.float().argmax(dim=1)


class PrefixTiTok(AdaptiveTokenizer):
    def __init__(self, config: Optional[PrefixConfig] = None):
        super().__init__()
        self.config = config if config is not None else PrefixConfig()
        cfg = self.config
        self.titok = TiTok(cfg.titok)
        self.mask_token = nn.Parameter(cfg.titok.token_dim ** -0.5 * torch.randn(cfg.titok.token_dim))
        self.length_predictor = (LengthPredictor(cfg.num_tokens, cfg.titok.token_dim, len(cfg.allowed_lengths),
                                                 cfg.predictor_width) if cfg.predictor else None)

    # -- facts ------------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def max_tokens(self) -> int:
        return self.config.num_tokens

    @property
    def codebook_size(self) -> Optional[int]:
        return self.config.titok.codebook_size if self.config.titok.quantizer == "vq" else None

    @property
    def allowed_lengths(self) -> tuple[int, ...]:
        return self.config.allowed_lengths

    # -- building blocks --------------------------------------------------------------------
    def _encode(self, images: torch.Tensor, sample: bool = False):
        titok = self.titok
        latents = titok.encoder(images, titok.latent_tokens)
        q = titok.quantizer(latents, sample=sample) if self.config.titok.quantizer == "kl" else titok.quantizer(latents)
        full = torch.full((images.shape[0],), self.max_tokens, dtype=torch.long, device=images.device)
        return Tokens(ids=q.ids, lengths=full, codes=q.codes, latents=latents), q

    def mask_tail(self, codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Codes ``B x L x d`` (L <= max_tokens) + lengths ``B`` -> ``B x max_tokens x d``: each row's
        first ``lengths`` codes, then the learned mask token."""
        b, width, d = codes.shape
        k = self.max_tokens
        if width < k:
            codes = torch.cat([codes, codes.new_zeros(b, k - width, d)], dim=1)
        keep = torch.arange(k, device=codes.device)[None] < lengths.to(codes.device)[:, None]
        return torch.where(keep[..., None], codes, self.mask_token.to(codes.dtype))

    def _check_lengths(self, lengths: Optional[torch.Tensor], b: int, width: int, device) -> torch.Tensor:
        if lengths is None:
            if width not in self.allowed_lengths:
                raise InputError(f"{width} tokens per row is not an allowed length {list(self.allowed_lengths)}: "
                                 "pass lengths")
            return torch.full((b,), width, dtype=torch.long, device=device)
        return check_lengths(lengths, b, width, self.allowed_lengths).to(device)

    # -- the round trip -----------------------------------------------------------------------
    def encode(self, images: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> Tokens:
        """Images -> ``Tokens`` padded to ``max_tokens``: every token (default), or each image's first
        ``lengths`` (ids ``PAD_ID`` and zero codes beyond)."""
        check_images(images, self.image_size)
        tokens, _ = self._encode(images)
        if lengths is None:
            return tokens
        return self._truncate(tokens, self._check_lengths(lengths, images.shape[0], self.max_tokens, images.device))

    def _truncate(self, tokens: Tokens, lengths: torch.Tensor) -> Tokens:
        keep = torch.arange(self.max_tokens, device=lengths.device)[None] < lengths[:, None]
        ids = None if tokens.ids is None else torch.where(keep, tokens.ids, torch.full_like(tokens.ids, PAD_ID))
        return Tokens(ids=ids, lengths=lengths, codes=tokens.codes * keep[..., None], latents=tokens.latents)

    def decode_codes(self, codes: torch.Tensor, lengths: Optional[torch.Tensor] = None, clamp: bool = True) -> torch.Tensor:
        """Padded codes ``B x L x d`` + lengths -> images, in one decoder call whatever the lengths."""
        if codes.dim() != 3 or codes.shape[1] > self.max_tokens:
            raise InputError(f"codes must be B x L x d with L <= {self.max_tokens}, got {tuple(codes.shape)}")
        lengths = self._check_lengths(lengths, codes.shape[0], codes.shape[1], codes.device)
        return self.titok.decode(self.mask_tail(codes, lengths), clamp=clamp)

    def decode(self, tokens: Tokens, clamp: bool = True) -> torch.Tensor:
        """``Tokens`` -> images; only each image's first ``tokens.lengths`` codes are read."""
        return self.decode_codes(tokens.codes, tokens.lengths, clamp)

    def decode_ids(self, ids: torch.Tensor, lengths: Optional[torch.Tensor] = None, clamp: bool = True) -> torch.Tensor:
        """Padded ids ``B x L`` + lengths ``B`` -> images (without ``lengths``: every id, L allowed)."""
        if self.codebook_size is None:
            raise InputError("this prefix tokenizer has continuous tokens (no ids): decode its Tokens instead")
        ids = check_ids(ids)
        if ids.shape[1] > self.max_tokens:
            raise InputError(f"got {ids.shape[1]} ids per row; this model reads at most {self.max_tokens}")
        lengths = self._check_lengths(lengths, ids.shape[0], ids.shape[1], ids.device)
        v = self.codebook_size
        check_ids_in_range(ids, lengths, v)
        codes = self.titok.quantizer.lookup(ids.clamp(0, v - 1))
        return self.decode_codes(codes, lengths, clamp)

    # -- rates --------------------------------------------------------------------------------
    @torch.no_grad()
    def sweep(self, images: torch.Tensor, lengths: Optional[tuple[int, ...]] = None, *,
              generator: Optional[torch.Generator] = None) -> RateSweep:
        """Reconstructions at each of ``lengths`` (default every allowed one): encode once, then one
        decoder call on the codes repeated T times with each copy's tail masked. ``generator`` is
        accepted for the AdaptiveTokenizer interface and unused: nothing here is random."""
        check_images(images, self.image_size)
        lengths = self.sweep_lengths(lengths)
        codes = self._encode(images)[0].codes
        t, b = len(lengths), images.shape[0]
        per = torch.tensor(lengths, device=images.device).repeat_interleave(b)
        out = self.decode_codes(codes.repeat(t, 1, 1), per)
        return RateSweep(lengths, out.view(t, b, *out.shape[1:]))

    # -- per-image length ---------------------------------------------------------------------
    @torch.no_grad()
    def select(self, images: torch.Tensor, criterion="l1", threshold: Optional[float] = None,
               max_tokens: Optional[int] = None, *, return_images: bool = True, predictor: bool = False,
               generator: Optional[torch.Generator] = None) -> Selection:
        """Per image, the shortest allowed length whose reconstruction meets ``criterion`` (a name of
        ``tokenizers/selection.py`` — ``l1``, ``mse``, ``psnr``, ``nrmse``, ``ssim``, ``budget`` — with its
        ``threshold``, or a ``Criterion``), else the evaluated length with the lowest error.
        ``max_tokens`` caps every image (lengths above it are never tried).

        Search: encode once, then bisection over the allowed lengths; each round is one batched
        decode of the images still searching (each at the middle of its own interval), so at most
        ``ceil(log2(T + 1))`` decodes for T allowed lengths, and images that are done leave the batch.
        The search assumes ``met`` is monotone in the length. Then its answer equals the exhaustive
        rule's (first met length of a full sweep; if none is met, the longest length, which the
        search always evaluates, and which has the lowest error of a monotone curve). Where the error
        is not monotone (e.g. 16 tokens meet the target, 24 do not, 32 do), the search may return a
        longer length than the exhaustive rule, and its fallback is the lowest error among the
        lengths it evaluated. ``errors`` (B x T) holds the criterion's error where it was evaluated
        and NaN elsewhere; ``iterations_run`` counts the batched decoder calls.

        ``predictor=True``: the lengths come from the learned length predictor (one pass, no
        search decode; ``criterion`` must be the name it was trained for, ``config.predictor_criterion``);
        ``errors`` then holds the error at the predicted length only, ``max_tokens`` still caps."""
        check_images(images, self.image_size)
        if criterion == "budget" and threshold is None:
            threshold = max_tokens or self.max_tokens
        crit = get_criterion(criterion, threshold, max_tokens)
        if isinstance(crit, TokenConfidence):
            raise InputError("the confidence criterion reads base-code probabilities (ALIT); a prefix tokenizer has "
                             "none: use a pixel criterion (l1, mse, psnr, nrmse, ssim) or budget")
        allowed = self.allowed_lengths
        cap = crit.max_tokens
        usable = max(1, sum(1 for n in allowed if cap is None or n <= cap))
        tokens = self._encode(images)[0]
        b, t, dev = images.shape[0], len(allowed), images.device
        allowed_t = torch.tensor(allowed, device=dev)
        errors = torch.full((b, t), float("nan"), device=dev)
        decodes = 0
        if predictor:
            if criterion != self.config.predictor_criterion:
                raise InputError(f"the length predictor was trained for the {self.config.predictor_criterion!r} "
                                 f"criterion, not {criterion!r}")
            chosen = self.predict_lengths(images, threshold=_threshold_of(crit), tokens=tokens).clamp_max(usable - 1)
            chosen = torch.searchsorted(allowed_t, allowed_t[chosen])
            recon = self.decode_codes(tokens.codes, allowed_t[chosen], clamp=False)
            decodes += 1
            self._score(crit, images, recon, allowed_t[chosen], chosen, errors, torch.arange(b, device=dev))
            return self._selection(tokens, allowed_t[chosen], recon if return_images else None, errors, decodes)
        lo = torch.zeros(b, dtype=torch.long, device=dev)
        hi = torch.full((b,), usable, dtype=torch.long, device=dev)  # hi == usable: nothing met yet
        kept = torch.zeros_like(images) if (return_images and crit.needs_pixels) else None
        while True:
            active = torch.nonzero(lo < hi)[:, 0]
            if not active.numel():
                break
            mid = (lo[active] + hi[active]) // 2
            recon = None
            if crit.needs_pixels:
                recon = self.decode_codes(tokens.codes[active], allowed_t[mid], clamp=False)
                decodes += 1
            met = self._score(crit, images[active], recon, allowed_t[mid], mid, errors, active)
            hi[active[met]] = mid[met]
            lo[active[~met]] = mid[~met] + 1
            if kept is not None and bool(met.any()):
                kept[active[met]] = recon[met].float()
        found = hi < usable
        fallback = errors[:, :usable].nan_to_num(nan=float("inf")).argmin(dim=1)
        chosen = torch.where(found, hi, fallback)
        out = None
        if return_images:
            redo = ~found if kept is not None else torch.ones(b, dtype=torch.bool, device=dev)
            out = kept if kept is not None else torch.zeros_like(images)
            if bool(redo.any()):
                out[redo] = self.decode_codes(tokens.codes[redo], allowed_t[chosen[redo]], clamp=False).float()
                decodes += 1
        return self._selection(tokens, allowed_t[chosen], out, errors, decodes)

    def _score(self, crit, images, recon, lengths, index, errors, rows) -> torch.Tensor:
        """The criterion on each row at its own length (grouped by length: ``met`` takes one count);
        writes ``errors[rows, index]`` and returns met (bool, per row)."""
        met = torch.zeros(len(rows), dtype=torch.bool, device=images.device)
        for n in lengths.unique().tolist():
            g = torch.nonzero(lengths == n)[:, 0]
            stats = IterationStats(num_tokens=int(n), images=images[g], p_gt=images.new_zeros(len(g), 0),
                                   recon=None if recon is None else recon[g])
            e = crit.error(stats).float()
            errors[rows[g], index[g]] = e
            met[g] = crit.met(e, int(n))
        return met

    def _selection(self, tokens: Tokens, lengths: torch.Tensor, images, errors, decodes: int) -> Selection:
        return Selection(tokens=self._truncate(tokens, lengths), images=None if images is None else images.clamp(0, 1),
                         errors=errors, iterations_run=decodes)

    # -- learned length predictor -------------------------------------------------------------
    @torch.no_grad()
    def predict_lengths(self, images: torch.Tensor, threshold: float, tokens: Optional[Tokens] = None) -> torch.Tensor:
        """Index into ``allowed_lengths`` (B int64) that the learned predictor expects the criterion it
        was trained for to choose at ``threshold`` — no decode. ``allowed_lengths[i]`` is the length."""
        head = self.length_predictor
        if head is None:
            raise ConfigError("this prefix tokenizer has no length predictor (config.predictor=False)")
        if not bool(head.trained):
            raise InputError("the length predictor is untrained: fit it first (prefix.model.fit_length_predictor)")
        if tokens is None:
            check_images(images, self.image_size)
            tokens = self._encode(images)[0]
        thr = torch.tensor(float(threshold), device=tokens.latents.device)
        return LengthPredictor.first_met(head(tokens.latents, thr))

    # -- training -----------------------------------------------------------------------------
    def draw_lengths(self, b: int, device, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Per-sample kept lengths for a training batch, by ``config.train_lengths`` / ``full_prob``."""
        cfg, allowed = self.config, torch.tensor(self.allowed_lengths, dtype=torch.float)
        if cfg.train_lengths == "full":
            probs = torch.zeros_like(allowed)
            probs[-1] = 1
        elif cfg.train_lengths == "inverse":
            probs = 1 / allowed
        else:
            probs = torch.ones_like(allowed)
        idx = torch.multinomial(probs / probs.sum(), b, replacement=True, generator=generator)
        if cfg.full_prob > 0:
            full = torch.rand(b, generator=generator) < cfg.full_prob
            idx[full] = len(allowed) - 1
        return allowed.long()[idx].to(device)

    def forward(self, images: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                sample: bool = True) -> TokenizerOutput:
        """Training forward: each sample decodes from its first ``lengths`` tokens (drawn per sample
        by ``draw_lengths`` when not given), unclamped, plus the quantizer's loss."""
        tokens, q = self._encode(images, sample=sample)
        if lengths is None:
            lengths = self.draw_lengths(images.shape[0], images.device)
        recon = self.titok.decode(self.mask_tail(tokens.codes, lengths), clamp=False)
        tokens = Tokens(ids=tokens.ids, lengths=lengths, codes=tokens.codes, latents=tokens.latents)
        return TokenizerOutput(images=recon, logits=None, tokens=tokens, quantizer_loss=q.loss, stats=q.stats)

    def last_layer(self) -> torch.Tensor:
        return self.titok.last_layer()


def _threshold_of(crit) -> float:
    for name in ("threshold", "tokens"):
        if hasattr(crit, name):
            return float(getattr(crit, name))
    raise InputError(f"criterion {crit.describe()} has no threshold for the length predictor")


@torch.no_grad()
def criterion_errors(model: PrefixTiTok, images: torch.Tensor, criterion="psnr", batch: int = 64) -> torch.Tensor:
    """The criterion's error at every allowed length, ``N x T`` (sweeps in batches of ``batch``)."""
    crit = get_criterion(criterion, None)
    rows = []
    for i in range(0, images.shape[0], batch):
        x = images[i:i + batch]
        codes = model._encode(x)[0].codes
        t, b = len(model.allowed_lengths), x.shape[0]
        per = torch.tensor(model.allowed_lengths, device=x.device).repeat_interleave(b)
        recon = model.decode_codes(codes.repeat(t, 1, 1), per, clamp=False).view(t, b, *x.shape[1:])
        rows.append(torch.stack([crit.error(IterationStats(n, x, x.new_zeros(b, 0), recon[j]))
                                 for j, n in enumerate(model.allowed_lengths)], dim=1))
    return torch.cat(rows)


def met_matrix(errors: torch.Tensor, lengths, criterion: str, threshold: float) -> torch.Tensor:
    """``N x T`` bool: is ``criterion`` at ``threshold`` met at each length, from ``criterion_errors``."""
    crit = get_criterion(criterion, threshold)
    return torch.stack([crit.met(errors[:, j], int(n)) for j, n in enumerate(lengths)], dim=1)


def exhaustive_choice(errors: torch.Tensor, met: torch.Tensor) -> torch.Tensor:
    """The exhaustive rule on a full sweep: first met length index, else the lowest error (N int64)."""
    first = met.float().argmax(dim=1)
    return torch.where(met.any(dim=1), first, errors.nan_to_num(nan=float("inf")).argmin(dim=1))


def fit_length_predictor(model: PrefixTiTok, images: torch.Tensor, criterion: str, thresholds, steps: int = 2000,
                         lr: float = 3e-3, batch: int = 256, seed: int = 0, log=None,
                         errors: Optional[torch.Tensor] = None) -> dict:
    """Train ``model.length_predictor`` (the tokenizer stays frozen): for each image and each of
    ``thresholds`` of ``criterion``, the target is which allowed lengths meet it (from one sweep
    per image, or the given ``errors``, N x T, of ``criterion_errors``); binary cross-entropy per
    length. Records the threshold normalisation and marks the head trained. Returns
    {"loss": final loss, "agreement": exact-length agreement with the criterion on ``images``}."""
    head = model.length_predictor
    if head is None:
        raise ConfigError("this prefix tokenizer has no length predictor (config.predictor=False)")
    if criterion != model.config.predictor_criterion:
        raise ConfigError(f"this model's predictor is for {model.config.predictor_criterion!r} (config."
                          f"predictor_criterion), not {criterion!r}")
    model.eval()
    thresholds = torch.tensor([float(t) for t in thresholds])
    with torch.no_grad():
        latents = torch.cat([model._encode(images[i:i + 64])[0].latents for i in range(0, len(images), 64)]).float()
        errors = criterion_errors(model, images, criterion) if errors is None else errors.float()
        targets = torch.stack([met_matrix(errors, model.allowed_lengths, criterion, float(t)) for t in thresholds])
    head.thr_mean.fill_(float(thresholds.mean()))
    head.thr_std.fill_(float(thresholds.std()) if len(thresholds) > 1 else 1.0)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(head.net.parameters(), lr=lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    n, k = latents.shape[0], len(thresholds)
    head.train()
    loss = torch.zeros(())
    for step in range(steps):
        i = torch.randint(n, (batch,), generator=g)
        j = torch.randint(k, (batch,), generator=g)
        logits = head(latents[i], thresholds[j])
        loss = nn.functional.binary_cross_entropy_with_logits(logits, targets[j, i].float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log and step % 500 == 0:
            log(f"predictor step {step}: bce {float(loss.detach()):.4f}")
    head.eval()
    head.trained.fill_(True)
    with torch.no_grad():
        agree = []
        for t_i, t in enumerate(thresholds):
            pred = LengthPredictor.first_met(head(latents, t))
            agree.append((pred == exhaustive_choice(errors, targets[t_i])).float().mean())
    return {"loss": float(loss.detach()), "agreement": float(torch.stack(agree).mean())}
