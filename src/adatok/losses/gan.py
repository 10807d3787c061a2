"""Adversarial losses: TiTok's patch discriminator, hinge losses, LeCam, the adaptive weight, and a
``GANLoss`` wrapper with a generator phase and a discriminator phase.

TiTok stage 2 (Yu et al. 2024, the official recipe): fixed GAN weight 0.01 from step 20k, hinge loss, LeCam 0.001.
ALIT stage 2 (Duggal et al. 2025, the official recipe): taming's adaptive weight at the pixel decoder's ``conv_out.weight``
times ``w_gan``; it uses taming's BatchNorm PatchGAN (``TamingPatchDiscriminator``).

DDP recipe (the training loop owns the wrapping)::

    gan = GANLoss(PatchDiscriminator()).to(device)
    ddp_disc = DDP(gan.discriminator)          # wraps the same module, parameters are shared
    # generator phase: the UNWRAPPED module runs inside (params frozen for the call), so no
    # discriminator grads and no DDP reducer involvement
    g_loss, g_logs = gan.generator_loss(fake, step, rec_loss, last_layer)
    (rec_loss + g_loss).backward(); opt_g.step()
    # discriminator phase: hand it the wrapped module; real and fake go through ONE forward
    if gan.active(step):
        d_loss, d_logs = gan.discriminator_loss(real, fake, step, disc=ddp_disc)
        d_loss.backward(); opt_d.step()
"""

from __future__ import annotations

import functools

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from adatok.errors import ConfigError, InputError
from adatok.layers.conv import Conv2dSame, same_padding

__all__ = [
    "BlurPool",
    "PatchDiscriminator",
    "TamingPatchDiscriminator",
    "hinge_d_loss",
    "generator_adv_loss",
    "LeCam",
    "adaptive_gan_weight",
    "GANLoss",
]


class BlurPool(nn.Module):
    """Depthwise blur + stride-2 downsampling with a normalised separable binomial kernel.

    Kernel = outer(k, k) / sum, (1, 3, 3, 1) by default; TF-"SAME" zero padding computed for the
    kernel size and stride 2 (so H -> ceil(H / 2)). Zero padding means only the interior of a
    constant image stays constant (border pixels see the zeros), as in the official code.
    """

    def __init__(self, kernel: tuple[int, ...] = (1, 3, 3, 1), stride: int = 2):
        super().__init__()
        k = torch.tensor(kernel, dtype=torch.float32)
        k2 = torch.outer(k, k)
        # A constant: recomputed at construction, kept out of checkpoints.
        self.register_buffer("kernel", (k2 / k2.sum())[None, None], persistent=False)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = x.shape[-3:]
        ks = self.kernel.shape[-1]
        ph = same_padding(ks, self.stride, h)
        pw = same_padding(ks, self.stride, w)
        x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        weight = self.kernel.to(x.dtype).expand(c, 1, ks, ks)
        return F.conv2d(x, weight, stride=self.stride, groups=c)


class PatchDiscriminator(nn.Module):
    """TiTok's ``NLayerDiscriminator`` (improved "blur" discriminator), official defaults.

    Input: images ``B x C x H x W`` in [0, 1], fed as they are (the official loss module passes
    its [0, 1] images straight in, no [-1, 1] mapping). Output: logits ``B x 1 x P x P`` (P =
    ``pooled_size``, 16), whatever H, W (adaptive max pool before the head).

    Layout: Conv2dSame 5x5 C->base + LeakyReLU(0.1); ``num_stages`` stages with widths
    base*(1, 1, 2, 4, ...) of Conv2dSame 3x3 -> BlurPool -> GroupNorm(32) -> LeakyReLU(0.1);
    AdaptiveMaxPool P x P; Conv 1x1 + LeakyReLU(0.1); Conv2dSame 5x5 -> 1. Module names follow
    the official ones (``block_in``, ``blocks.i``, ``to_logits``) so its weights would map 1:1.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 128, num_stages: int = 3,
                 pooled_size: int = 16, norm_groups: int = 32, blur_kernel: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        if num_stages < 1:
            raise ConfigError(f"PatchDiscriminator: num_stages={num_stages} must be >= 1")
        mult = (1,) + tuple(2**i for i in range(num_stages))
        widths = [base_channels * m for m in mult]
        if any(w % norm_groups for w in widths):
            raise ConfigError(f"PatchDiscriminator: widths {widths} must be divisible by norm_groups={norm_groups}")
        act = functools.partial(nn.LeakyReLU, negative_slope=0.1)
        self.block_in = nn.Sequential(Conv2dSame(in_channels, base_channels, 5), act())
        self.blocks = nn.ModuleList(
            nn.Sequential(Conv2dSame(cin, cout, 3), BlurPool(blur_kernel), nn.GroupNorm(norm_groups, cout), act())
            for cin, cout in zip(widths[:-1], widths[1:])
        )
        self.pool = nn.AdaptiveMaxPool2d((pooled_size, pooled_size))
        top = widths[-1]
        self.to_logits = nn.Sequential(Conv2dSame(top, top, 1), act(), Conv2dSame(top, 1, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block_in(x)
        for block in self.blocks:
            h = block(h)
        return self.to_logits(self.pool(h))


class TamingPatchDiscriminator(nn.Module):
    """taming-transformers' PatchGAN (pix2pix ``NLayerDiscriminator``), the one ALIT trains.

    Conv 4x4/2 C->ndf + LeakyReLU(0.2); ``n_layers - 1`` more stride-2 and one stride-1 conv
    4x4 (no bias) + BatchNorm + LeakyReLU(0.2), widths ndf*min(2**i, 8); Conv 4x4/1 -> 1.
    Weights N(0, 0.02), BatchNorm weight N(1, 0.02). Input fed as given (ALIT feeds [0, 1]).
    256 x 256 input -> logits ``B x 1 x 30 x 30``. BatchNorm makes real and fake statistics
    depend on how they are batched: use ``GANLoss(..., joint_forward=False)`` to match taming.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        act = functools.partial(nn.LeakyReLU, 0.2, True)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), act()]
        cin = ndf
        for i in range(1, n_layers + 1):
            cout = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(cin, cout, 4, stride, 1, bias=False), nn.BatchNorm2d(cout), act()]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean relu(1 - D(real)) + mean relu(1 + D(fake))), float32 scalar."""
    return 0.5 * (F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean())


def generator_adv_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge-GAN generator loss: -mean D(fake), float32 scalar."""
    return -fake_logits.float().mean()


class LeCam(nn.Module):
    """LeCam regulariser (Tseng et al., 2021) with EMA anchors of the mean logits.

    loss = relu(mean D(real) - ema_fake)^2 + relu(ema_real - mean D(fake))^2, computed with the
    anchors from *before* this step; then the anchors move: ema <- decay*ema + (1-decay)*mean
    (both start at 0, as in TiTok). The anchors are buffers, so they checkpoint with the module.
    Under torch.distributed the batch means are averaged over ranks before the update, so every
    rank keeps the same anchors (an all-reduce of two floats; no host sync).
    """

    def __init__(self, decay: float = 0.999):
        super().__init__()
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, update: bool = True) -> torch.Tensor:
        real_mean, fake_mean = real_logits.float().mean(), fake_logits.float().mean()
        loss = F.relu(real_mean - self.ema_fake).pow(2) + F.relu(self.ema_real - fake_mean).pow(2)
        if update:
            self.update(real_mean, fake_mean)
        return loss

    @torch.no_grad()
    def update(self, real_mean: torch.Tensor, fake_mean: torch.Tensor) -> None:
        means = torch.stack([real_mean.detach().float(), fake_mean.detach().float()])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(means)
            means = means / dist.get_world_size()
        w = 1.0 - self.decay
        self.ema_real.lerp_(means[0].to(self.ema_real.dtype), w)
        self.ema_fake.lerp_(means[1].to(self.ema_fake.dtype), w)


def adaptive_gan_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer_weight: torch.Tensor,
                        max_weight: float = 1e4) -> torch.Tensor:
    """taming-transformers' adaptive weight: ||dL_rec/dW|| / (||dL_g/dW|| + 1e-4), clamped to
    [0, max_weight], detached. W = the generator's last layer weight (ALIT: the pixel decoder's
    ``conv_out.weight``). Both graphs are retained for the real backward. Multiply by the GAN
    weight yourself (``GANLoss`` does). Call it on unscaled losses (before GradScaler.scale).
    ``torch.autograd.grad`` only captures the gradient of W (no ``.grad`` is written and no DDP
    all-reduce hook fires), so under DDP every rank uses its local weight, as taming does.
    """
    if not last_layer_weight.requires_grad:
        raise InputError("adaptive_gan_weight: last_layer_weight does not require grad; pass the generator's "
                         "trainable last-layer weight (e.g. decoder.conv_out.weight)")
    rec_grad = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer_weight, retain_graph=True)[0]
    w = torch.linalg.vector_norm(rec_grad.float()) / (torch.linalg.vector_norm(g_grad.float()) + 1e-4)
    return w.clamp(0.0, max_weight).detach()


class GANLoss(nn.Module):
    """The discriminator, LeCam anchors, start step and weights in one module (checkpoint it).

    ``generator_loss`` -> ``weight * factor * (-mean D(fake))`` (times the adaptive weight when
    ``adaptive``), zero before ``start_step``. ``discriminator_loss`` -> ``factor * hinge +
    lecam_weight * LeCam``, zero before ``start_step`` (skip the D step then: see ``active``).
    The discriminator runs in float32 with autocast off (as the official loss module does).
    Logs are dicts of detached tensors (no host syncs). Defaults = TiTok stage 2; for ALIT use
    ``TamingPatchDiscriminator``, ``adaptive=True``, ``lecam_weight=0``, ``weight=w_gan`` (the
    loop may reassign ``gan.weight`` per epoch for ALIT's 0 / 0.2 / 0.8 schedule).
    """

    def __init__(self, discriminator: nn.Module | None = None, *, start_step: int = 20_000, weight: float = 0.01,
                 factor: float = 1.0, lecam_weight: float = 0.001, lecam_decay: float = 0.999,
                 adaptive: bool = False, max_adaptive_weight: float = 1e4, joint_forward: bool = True):
        super().__init__()
        self.discriminator = discriminator if discriminator is not None else PatchDiscriminator()
        self.lecam = LeCam(lecam_decay)
        self.start_step = start_step
        self.weight = weight
        self.factor = factor
        self.lecam_weight = lecam_weight
        self.adaptive = adaptive
        self.max_adaptive_weight = max_adaptive_weight
        self.joint_forward = joint_forward

    def active(self, step: int) -> bool:
        """Whether the GAN terms are on at this step (train D only when True)."""
        return step >= self.start_step and self.factor > 0.0

    def generator_loss(self, fake: torch.Tensor, step: int, rec_loss: torch.Tensor | None = None,
                       last_layer: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted adversarial loss for the generator; ``fake`` keeps its graph.

        The discriminator's parameters have ``requires_grad=False`` for the duration of the call
        (flags restored afterwards), so the recorded graph has no edges into them: the
        generator's backward leaves their ``.grad`` untouched. With ``adaptive`` pass the
        (weighted) reconstruction(+perceptual) loss and the generator's last-layer weight.
        """
        zero = torch.zeros((), device=fake.device)
        if not (self.active(step) and self.weight > 0.0):
            return zero, {"gan_g_loss": zero, "gan_d_weight": zero}
        params = list(self.discriminator.parameters())
        flags = [p.requires_grad for p in params]
        try:
            for p in params:
                p.requires_grad_(False)
            with torch.autocast(device_type=fake.device.type, enabled=False):
                g_loss = generator_adv_loss(self.discriminator(fake.float()))
        finally:
            for p, f in zip(params, flags):
                p.requires_grad_(f)
        if self.adaptive:
            if rec_loss is None or last_layer is None:
                raise InputError("GANLoss.generator_loss: adaptive=True needs rec_loss and last_layer")
            d_weight = adaptive_gan_weight(rec_loss, g_loss, last_layer, self.max_adaptive_weight) * self.weight
        else:
            d_weight = torch.full((), float(self.weight), device=fake.device)
        loss = d_weight * self.factor * g_loss
        return loss, {"gan_g_loss": g_loss.detach(), "gan_d_weight": d_weight.detach()}

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor, step: int,
                           disc: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Discriminator loss on detached ``real`` and ``fake``; updates the LeCam anchors.

        ``disc`` overrides the module (pass the DDP-wrapped discriminator here). With
        ``joint_forward`` real and fake are concatenated into one forward (exact for the
        per-sample GroupNorm discriminator, and a single DDP forward per backward).
        """
        zero = torch.zeros((), device=real.device)
        if not self.active(step):
            return zero, {"gan_d_loss": zero, "gan_logits_real": zero, "gan_logits_fake": zero, "gan_lecam": zero}
        if real.shape[1:] != fake.shape[1:]:
            raise InputError(f"GANLoss.discriminator_loss: real {tuple(real.shape)} and fake {tuple(fake.shape)} "
                             "differ in shape")
        d = disc if disc is not None else self.discriminator
        real, fake = real.detach().float(), fake.detach().float()
        with torch.autocast(device_type=real.device.type, enabled=False):
            if self.joint_forward:
                logits_real, logits_fake = d(torch.cat([real, fake])).split([real.shape[0], fake.shape[0]])
            else:
                logits_real, logits_fake = d(real), d(fake)
            loss = self.factor * hinge_d_loss(logits_real, logits_fake)
            lecam = zero
            if self.lecam_weight > 0.0:
                lecam = self.lecam_weight * self.lecam(logits_real, logits_fake)
                loss = loss + lecam
        logs = {
            "gan_d_loss": loss.detach(),
            "gan_logits_real": logits_real.detach().float().mean(),
            "gan_logits_fake": logits_fake.detach().float().mean(),
            "gan_lecam": lecam.detach(),
        }
        return loss, logs
