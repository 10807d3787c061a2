"""Fast CPU tests of adatok.losses (random weights written to tmp files; nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import logging
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from adatok.errors import InputError
from adatok.losses import (
    LPIPS,
    BlurPool,
    ConvNeXtPerceptual,
    GANLoss,
    LeCam,
    PatchDiscriminator,
    PerceptualLoss,
    TamingPatchDiscriminator,
    adaptive_gan_weight,
    generator_adv_loss,
    hinge_d_loss,
    kl_loss,
    proxy_code_loss,
    reconstruction_loss,
)
from adatok.quantizers.kl import DiagonalGaussian

# ----------------------------------------------------------------------------- reconstruction / CE / KL


def test_reconstruction_loss():
    a = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 3.0]])
    assert reconstruction_loss(a, b, "l1").item() == pytest.approx(3 / 4)
    assert reconstruction_loss(a, b, "l2").item() == pytest.approx(5 / 4)
    with pytest.raises(InputError):
        reconstruction_loss(a, b, "l3")


def test_proxy_code_loss_hand_example():
    # B=1, V=3, 1x2 positions; logits per position: [ln1, ln2, ln1] and [0, 0, 0]
    logits = torch.tensor([[math.log(1), 0.0], [math.log(2), 0.0], [math.log(1), 0.0]]).view(1, 3, 1, 2)
    codes = torch.tensor([[1, 2]])
    # position 0: p = [1/4, 1/2, 1/4] -> -ln(1/2); position 1: uniform -> ln 3
    assert proxy_code_loss(logits, codes).item() == pytest.approx((math.log(2) + math.log(3)) / 2, rel=1e-6)
    # label smoothing eps: (1-eps)*nll + eps*mean_v(-log p_v)
    eps = 0.1
    pos0 = (1 - eps) * math.log(2) + eps * (math.log(4) + math.log(2) + math.log(4)) / 3
    pos1 = math.log(3)
    assert proxy_code_loss(logits, codes, eps).item() == pytest.approx((pos0 + pos1) / 2, rel=1e-6)


def test_proxy_code_loss_matches_cross_entropy_bf16():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 16, 4, 4, generator=g).bfloat16()
    codes = torch.randint(0, 16, (2, 16), generator=g)
    ref = F.cross_entropy(logits.float().view(2, 16, 16), codes, label_smoothing=0.2)
    out = proxy_code_loss(logits, codes, label_smoothing=0.2)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref)
    with pytest.raises(InputError):
        proxy_code_loss(logits, codes[:, :8])


def test_kl_loss_matches_diagonal_gaussian():
    z = torch.randn(3, 5, 8)
    q = DiagonalGaussian(4, kl_weight=1e-6)
    mean, logvar = q.split(z)
    torch.testing.assert_close(1e-6 * kl_loss(mean, logvar), q(z).loss)
    assert kl_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)).item() == 0.0


# ----------------------------------------------------------------------------- discriminator


def test_hinge_values():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - x) = 0, 0.5, 2 -> mean 5/6
    fake = torch.tensor([-2.0, 0.0])  # relu(1 + x) = 0, 1 -> mean 1/2
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (5 / 6 + 1 / 2))
    assert generator_adv_loss(fake).item() == pytest.approx(1.0)


def test_discriminator_shape_and_official_param_count():
    d = PatchDiscriminator(base_channels=32)
    assert d(torch.rand(1, 3, 256, 256)).shape == (1, 1, 16, 16)
    assert PatchDiscriminator(base_channels=32, num_stages=2, pooled_size=4)(torch.rand(1, 3, 40, 40)).shape \
        == (1, 1, 4, 4)
    # spec titok.md §10, by hand: conv 5x5 3->128, 3x3 convs 128->128->256->512 (+ GroupNorm affine),
    # 1x1 512->512, 5x5 512->1, all with bias
    expected = (3 * 128 * 25 + 128) + (128 * 128 * 9 + 128 + 2 * 128) + (128 * 256 * 9 + 256 + 2 * 256) \
        + (256 * 512 * 9 + 512 + 2 * 512) + (512 * 512 + 512) + (512 * 25 + 1)
    assert expected == 1_909_889
    official = PatchDiscriminator()
    assert sum(p.numel() for p in official.parameters()) == expected
    assert all(not k.endswith("kernel") for k in official.state_dict())  # the blur kernel is a constant


def test_taming_discriminator_shape():
    assert TamingPatchDiscriminator(ndf=8)(torch.rand(2, 3, 64, 64)).shape == (2, 1, 6, 6)


def test_blurpool_depthwise_normalised():
    bp = BlurPool()
    k = bp.kernel
    assert k.shape == (1, 1, 4, 4) and k.sum().item() == pytest.approx(1.0)
    assert torch.allclose(k[0, 0], torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64)
    x = torch.full((1, 3, 16, 16), 0.7)
    y = bp(x)
    assert y.shape == (1, 3, 8, 8)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], torch.full((1, 3, 6, 6), 0.7))  # zero pad touches the border
    # depthwise: channels do not mix
    x = torch.zeros(1, 3, 16, 16)
    x[:, 1] = torch.rand(16, 16)
    y = bp(x)
    assert y[:, 0].abs().max() == 0 and y[:, 2].abs().max() == 0 and y[:, 1].abs().max() > 0
    assert bp(torch.rand(1, 2, 15, 9)).shape == (1, 2, 8, 5)


def test_lecam_ema_updates():
    lc = LeCam(decay=0.9)
    real, fake = torch.full((2, 1, 2, 2), 2.0), torch.full((2, 1, 2, 2), -1.0)
    # anchors start at 0: relu(2 - 0)^2 + relu(0 - (-1))^2 = 5
    assert lc(real, fake).item() == pytest.approx(5.0)
    assert lc.ema_real.item() == pytest.approx(0.2) and lc.ema_fake.item() == pytest.approx(-0.1)
    assert lc(real, fake).item() == pytest.approx((2 + 0.1) ** 2 + (0.2 + 1) ** 2)
    assert lc.ema_real.item() == pytest.approx(0.9 * 0.2 + 0.2)
    assert set(lc.state_dict()) == {"ema_real", "ema_fake"}


def test_generator_phase_leaves_discriminator_grads_none():
    gan = GANLoss(PatchDiscriminator(base_channels=32, num_stages=1, pooled_size=4), start_step=10)
    gen = nn.Conv2d(3, 3, 3, padding=1)
    x = torch.rand(2, 3, 16, 16)
    loss, logs = gan.generator_loss(gen(x), step=9)
    assert loss.item() == 0.0
    loss, logs = gan.generator_loss(gen(x), step=10)
    loss.backward()
    assert all(p.grad is None for p in gan.discriminator.parameters())
    assert all(p.requires_grad for p in gan.discriminator.parameters())  # flags restored
    assert gen.weight.grad is not None and gen.weight.grad.abs().sum() > 0
    torch.testing.assert_close(loss.detach(), 0.01 * logs["gan_g_loss"])
    # discriminator phase: fake detached, disc gets grads, LeCam anchors move
    d_loss, d_logs = gan.discriminator_loss(x, gen(x), step=10)
    d_loss.backward()
    assert all(p.grad is not None for p in gan.discriminator.parameters())
    assert gan.lecam.ema_real.item() != 0.0
    assert gan.discriminator_loss(x, gen(x), step=0)[0].item() == 0.0


def test_discriminator_loss_joint_equals_separate():
    torch.manual_seed(0)
    d = PatchDiscriminator(base_channels=32, num_stages=1, pooled_size=4)
    real, fake = torch.rand(2, 3, 16, 16), torch.rand(3, 3, 16, 16)
    joint = GANLoss(d, start_step=0, lecam_weight=0.0).discriminator_loss(real, fake, 0)[0]
    sep = GANLoss(d, start_step=0, lecam_weight=0.0, joint_forward=False).discriminator_loss(real, fake, 0)[0]
    torch.testing.assert_close(joint, sep)
    # the `disc` override is what runs
    other = PatchDiscriminator(base_channels=32, num_stages=1, pooled_size=4)
    ref = hinge_d_loss(other(real), other(fake))
    torch.testing.assert_close(GANLoss(d, start_step=0, lecam_weight=0.0).discriminator_loss(
        real, fake, 0, disc=other)[0], ref)


def test_adaptive_weight_hand_computation():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    x, t = torch.randn(5, 4), torch.randn(5, 3)
    y = lin(x)
    rec = (y - t).pow(2).mean()
    g = -y.mean()
    w = adaptive_gan_weight(rec, g, lin.weight)
    d_rec = 2.0 / y.numel() * (y - t).detach().T @ x  # dL/dW for y = x W^T + b
    d_g = -1.0 / y.numel() * torch.ones(5, 3).T @ x
    assert w.item() == pytest.approx((d_rec.norm() / (d_g.norm() + 1e-4)).item(), rel=1e-5)
    assert not w.requires_grad
    assert adaptive_gan_weight(rec * 1e9, g, lin.weight, max_weight=7.0).item() == 7.0
    # inside GANLoss: weight * adaptive * g
    gan = GANLoss(PatchDiscriminator(base_channels=32, num_stages=1, pooled_size=2), start_step=0, weight=0.5,
                  adaptive=True)
    conv = nn.Conv2d(3, 3, 1)
    img = conv(torch.rand(1, 3, 16, 16))
    rec = img.pow(2).mean()
    loss, logs = gan.generator_loss(img, 0, rec_loss=rec, last_layer=conv.weight)
    torch.testing.assert_close(loss.detach(), logs["gan_d_weight"] * logs["gan_g_loss"])
    assert logs["gan_d_weight"].item() > 0


# ----------------------------------------------------------------------------- perceptual


def _write_lpips_files(tmp_path):
    """Random VGG16 ``features.*`` (torchvision layout; the classifier keys, unused, are left out to keep
    the test fast) and LPIPS v0.1 heads ``lin{k}.model.1.weight`` (1 x C x 1 x 1, non-negative)."""
    g = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        feats = torchvision.models.vgg16(weights=None).features
    pool = torch.randn(3_000_000, generator=g)  # slices of one pool: much faster than 15M fresh randoms
    sd = {}
    for i, (k, v) in enumerate(feats.state_dict().items()):
        off = (i * 104_729) % (pool.numel() - v.numel() + 1)
        std = math.sqrt(2.0 / v[0].numel()) if v.dim() == 4 else 0.0  # He init keeps deep features alive
        sd[f"features.{k}"] = pool[off:off + v.numel()].view(v.shape) * std
    torch.save(sd, tmp_path / "vgg16-397923af.pth")
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for i, c in
             enumerate((64, 128, 256, 512, 512))}
    torch.save(heads, tmp_path / "vgg.pth")


def test_lpips_random_weights(tmp_path, monkeypatch):
    _write_lpips_files(tmp_path)
    monkeypatch.setenv("ADATOK_WEIGHTS_DIR", str(tmp_path))
    lp = LPIPS()
    assert lp.state_dict() == {} and list(lp.parameters()) == []
    lp.train()
    assert not lp.training
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    with torch.no_grad():
        d = lp(torch.cat([a, a, b]), torch.cat([a, b, a]))
    assert d.shape == (6,)
    assert d[:2].abs().max().item() < 1e-6  # identical -> 0
    assert (d[2:4] > 0).all()
    torch.testing.assert_close(d[2:4], d[4:6])  # symmetric
    pl = PerceptualLoss("lpips", weight=0.5, weights_dir=tmp_path)
    assert pl.available and pl.state_dict() == {}
    b1 = b[:1].clone().requires_grad_(True)
    loss = pl(a[:1], b1)
    torch.testing.assert_close(loss.detach(), 0.5 * d[2])
    loss.backward()  # grads reach the image, never the frozen weights (they are buffers)
    assert b1.grad is not None and b1.grad.abs().sum() > 0


def _lpips_package_has_heads() -> bool:
    import importlib.util
    spec = importlib.util.find_spec("lpips")
    return spec is not None and (Path(spec.origin).parent / "weights" / "v0.1" / "vgg.pth").is_file()


def test_perceptual_missing_files_warns_once(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("ADATOK_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with caplog.at_level(logging.WARNING, logger="adatok.losses"):
        pl = PerceptualLoss("lpips-convnext_s-1.0-2.0", weights_dir=tmp_path / "nowhere")
    records = [r for r in caplog.records if r.name == "adatok.losses"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    msg = records[0].getMessage()
    assert "\n" not in msg and "vgg16-397923af.pth" in msg and "convnext_small-0c510722.pth" in msg
    # the LPIPS heads are found in the `lpips` package when it is installed (a [dev] dependency)
    assert "lpips_vgg_v0.1.pth or vgg.pth" in msg or _lpips_package_has_heads()
    assert str(tmp_path / "nowhere") in msg and "torch hub cache" in msg
    assert pl.available is False
    x = torch.rand(1, 3, 16, 16)
    assert pl(x, x.flip(-1)).item() == 0.0
    assert PerceptualLoss("none").available is False


def test_convnext_random_weights(tmp_path):
    g = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        net = torchvision.models.convnext_small(weights=None)
    # The real keys and shapes; random values taken as views at varying offsets of ONE random pool, so
    # the file (shared storage) is small and fast to write and read: 50M fresh randoms take seconds.
    pool = torch.randn(4_000_000, generator=g) * 0.05
    sd = {}
    for i, (k, v) in enumerate(net.state_dict().items()):
        off = (i * 104_729) % (pool.numel() - v.numel() + 1)
        sd[k] = pool[off:off + v.numel()].view(v.shape)
    path = tmp_path / "convnext_small-0c510722.pth"
    torch.save(sd, path)
    del sd
    cp = ConvNeXtPerceptual(path, resize=32)  # official resize is 224; 32 keeps the test cheap
    assert cp.state_dict() == {} and list(cp.parameters()) == []
    a, b = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        d = cp(torch.cat([a, a, b]), torch.cat([a, b, a]))
    assert d[0].item() == 0.0 and d[1].item() > 0
    torch.testing.assert_close(d[1], d[2])
