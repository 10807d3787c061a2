"""MaskGIT-VQGAN: official key layout, golden comparison with the independent reference, quirks."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from adatok.errors import ConfigError, InputError
from adatok.pixel import (
    Conv2dSame,
    MaskGITVQGAN,
    MaskGITVQGANConfig,
    PixelDecoder,
    ResnetBlock,
    same_padding,
    soft_codes,
)

try:
    from tests.reference import maskgit_vqgan_ref as ref
except ImportError:  # tests/ itself is on sys.path (rootdir-relative imports)
    from reference import maskgit_vqgan_ref as ref

TINY = MaskGITVQGANConfig(base_channels=32, z_channels=32, codebook_size=64, image_size=64)
_TSV_NAME = "maskgit_vqgan_imagenet_f16_256.tsv"
# Copied from the spec (shared/specs/titok_keys): dumped from the official classes.
_TSV = Path(__file__).resolve().parents[1] / "reference" / "keys" / _TSV_NAME


def random_official_state_dict(config, seed=0, dtype=torch.float32):
    """Random weights in the official key layout, scaled so every tensor visibly matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in MaskGITVQGAN(config).state_dict().items()}
    sd = {}
    for key, shape in shapes.items():
        r = torch.randn(shape, generator=g, dtype=torch.float64)
        if key == "quantize.embedding.weight":
            t = r
        elif "norm" in key:
            t = 1 + 0.1 * r if key.endswith("weight") else 0.1 * r
        elif key.endswith("bias"):
            t = 0.1 * r
        else:  # conv weight: ~1.5x gain so activations neither vanish nor explode
            t = r * (1.5 / math.sqrt(shape[1] * shape[2] * shape[3]))
        sd[key] = t.to(dtype)
    return sd


@pytest.fixture(scope="module")
def tiny():
    sd = random_official_state_dict(TINY)
    model = MaskGITVQGAN(TINY).eval()
    model.load_state_dict(sd, strict=True)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return model, sd, images


# ----------------------------------------------------------------------------- config and layout
def test_config_validation():
    assert MaskGITVQGANConfig().downsample_factor == 16 and MaskGITVQGANConfig().latent_size == 16
    assert MaskGITVQGANConfig(channel_mult=[1, 2]).channel_mult == (1, 2)
    for bad in (dict(base_channels=48), dict(channel_mult=()), dict(image_size=100), dict(num_res_blocks=0),
                dict(commitment_cost=-1.0), dict(channel_mult=(1, 0)), dict(base_channels=128.0)):
        with pytest.raises(ConfigError) as err:
            MaskGITVQGANConfig(**bad)
        assert "\n" not in str(err.value)


def test_norm_groups():
    """Official GroupNorm(32) by default; small models may use fewer groups (several channels per
    group), with the same parameters and keys, and widths must split into the groups."""
    official, small = MaskGITVQGAN(TINY), MaskGITVQGAN(replace(TINY, norm_groups=8))
    norms = [m for m in official.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and {m.num_groups for m in norms} == {32}
    assert {m.num_groups for m in small.modules() if isinstance(m, torch.nn.GroupNorm)} == {8}
    assert {k: v.shape for k, v in small.state_dict().items()} == {k: v.shape for k, v in official.state_dict().items()}
    with pytest.raises(ConfigError, match=r"divisible by 48 for GroupNorm\(48\)"):
        MaskGITVQGANConfig(base_channels=64, norm_groups=48)
    with pytest.raises(ConfigError, match="norm_groups"):
        MaskGITVQGANConfig(norm_groups=0)


def test_state_dict_matches_official_tsv():
    tsv = _TSV
    official = {}
    for line in tsv.read_text().splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        official[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
        assert dtype == "float32"
    with torch.device("meta"):
        model = MaskGITVQGAN()
        decoder = PixelDecoder(MaskGITVQGANConfig())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(ours) == set(official)
    assert ours == official
    dec = {k: tuple(v.shape) for k, v in decoder.state_dict().items()}
    assert dec == {k[len("decoder."):]: s for k, s in official.items() if k.startswith("decoder.")}


# ----------------------------------------------------------------------------- golden comparison
def test_matches_reference_float32(tiny):
    model, sd, images = tiny
    with torch.inference_mode():
        ref_latents = ref.encode_latents(sd, images)
        ref_ids = ref.encode_ids(sd, images)
        latents = model.encode_latents(images)
        ids = model.encode_ids(images)
        assert ids.shape == (2, 16) and ids.dtype == torch.int64
        assert torch.equal(ids, ref_ids)
        assert ids.unique().numel() > 4  # non-trivial codes
        assert (latents - ref_latents).abs().max() < 1e-4
        ref_raw = ref.decode_codes(sd, ref.codes_from_ids(sd, ids))
        raw = model.decode_codes(model.codes_from_ids(ids))
        assert ref_raw.abs().max() > 1.5 and ref_raw.std() > 0.3  # activations are not trivial
        assert (raw - ref_raw).abs().max() < 1e-4
        out = model.decode_ids(ids)
        assert (out - ref.decode_ids(sd, ids)).abs().max() < 1e-4
        assert out.min() >= 0 and out.max() <= 1
        assert torch.equal(model.decode_ids(ids.view(2, 4, 4)), out)  # B x h x w accepted too


def test_matches_reference_float64(tiny):
    model, _, images = tiny
    sd64 = random_official_state_dict(TINY, dtype=torch.float64)
    model64 = MaskGITVQGAN(TINY).double().eval()
    model64.load_state_dict(sd64, strict=True)
    x = images.double()
    with torch.inference_mode():
        latents = model64.encode_latents(x)
        torch.testing.assert_close(latents, ref.encode_latents(sd64, x), rtol=0, atol=1e-10)  # catches GN eps 1e-5
        assert torch.equal(model64.quantize_latents(latents)[0], ref.quantize_ids(sd64, latents))
        probs = torch.softmax(torch.randn(2, 64, 4, 4, dtype=torch.float64) * 3, dim=1)
        soft = torch.einsum("bvhw,vc->bchw", probs, sd64["quantize.embedding.weight"])
        torch.testing.assert_close(model64.decode_soft(probs), ref.decode_codes(sd64, soft), rtol=0, atol=1e-10)


def test_channels_last_module_matches(tiny):
    model, _, images = tiny
    cl = MaskGITVQGAN(TINY).eval()
    cl.load_state_dict(model.state_dict())
    cl = cl.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for x in (images, images.contiguous(memory_format=torch.channels_last)):
            ids = cl.encode_ids(x)
            assert torch.equal(ids, model.encode_ids(images))
            out = cl.decode_codes(cl.codes_from_ids(ids))
            assert out.is_contiguous()
            assert (out - model.decode_codes(model.codes_from_ids(ids))).abs().max() < 1e-4


def _fit_channels(x, c):
    """x truncated / zero-padded to c channels (the only shape-valid way to feed x to a cout->cout conv)."""
    return x[:, :c] if x.shape[1] >= c else F.pad(x, (0, 0, 0, 0, 0, c - x.shape[1]))


@pytest.mark.parametrize("variant", ["shortcut_of_input", "no_shortcut", "shortcut_only"])
def test_shortcut_quirk_is_detected(tiny, monkeypatch, variant):
    """A block implemented the 'usual' way must fail the golden comparison (out = h + nin(h) is required)."""
    model, sd, images = tiny
    original = ResnetBlock.forward

    def buggy(self, x):
        if self.nin_shortcut is None:
            return original(self, x)
        h = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        if variant == "shortcut_of_input":
            return h + self.nin_shortcut(_fit_channels(x, h.shape[1]))
        return h if variant == "no_shortcut" else self.nin_shortcut(h)

    codes = ref.codes_from_ids(sd, torch.arange(16).view(1, 16) % 64)
    with torch.inference_mode():
        good_latents, good_images = model.encode_latents(images), model.decode_codes(codes)
        monkeypatch.setattr(ResnetBlock, "forward", buggy)
        bad_latents, bad_images = model.encode_latents(images), model.decode_codes(codes)
    assert (good_latents - ref.encode_latents(sd, images)).abs().max() < 1e-4
    assert (bad_latents - ref.encode_latents(sd, images)).abs().max() > 1e-2
    assert (good_images - ref.decode_codes(sd, codes)).abs().max() < 1e-4
    assert (bad_images - ref.decode_codes(sd, codes)).abs().max() > 1e-2


# ----------------------------------------------------------------------------- padding
@pytest.mark.parametrize(
    "k,s,i,d,expected",
    [(3, 1, 17, 1, (1, 1)), (1, 1, 8, 1, (0, 0)), (3, 2, 32, 1, (0, 1)), (3, 2, 33, 1, (1, 1)),
     (4, 1, 10, 1, (1, 2)), (5, 3, 10, 1, (2, 2)), (3, 1, 9, 2, (2, 2)), (2, 2, 8, 1, (0, 0))],
)
def test_same_padding_values(k, s, i, d, expected):
    assert same_padding(k, s, i, d) == expected


@pytest.mark.parametrize("k,s,size", [(3, 2, 8), (3, 2, 9), (4, 1, 7), (3, 1, 6), (1, 1, 5)])
def test_conv2d_same_matches_tf_padding(k, s, size):
    torch.manual_seed(0)
    conv = Conv2dSame(4, 5, k, stride=s)
    x = torch.randn(1, 4, size, size + 1)
    pads = same_padding(k, s, size + 1) + same_padding(k, s, size)
    want = F.conv2d(F.pad(x, pads), conv.weight, conv.bias, stride=s)
    got = conv(x)
    assert got.shape[-2:] == (math.ceil(size / s), math.ceil((size + 1) / s))
    torch.testing.assert_close(got, want)


def test_stride1_convs_do_not_call_pad(tiny, monkeypatch):
    model, _, images = tiny
    assert Conv2dSame(4, 4, 3).padding == (1, 1)

    def no_pad(*args, **kwargs):
        raise AssertionError("F.pad called on the 3x3/1x1 stride-1 path")

    monkeypatch.setattr(F, "pad", no_pad)
    with torch.inference_mode():
        model.decode_ids(model.encode_ids(images[:1]))


# ----------------------------------------------------------------------------- ids and errors
def test_decode_ids_errors(tiny):
    model = tiny[0]
    bad = [torch.full((1, 16), 64), torch.full((1, 16), -1), torch.zeros(1, 15, dtype=torch.long),
           torch.zeros(1, 16), torch.zeros(16, dtype=torch.long), torch.zeros(1, 1, 4, 4, dtype=torch.long)]
    for ids in bad:
        with pytest.raises(InputError) as err:
            model.decode_ids(ids)
        assert "\n" not in str(err.value)


def test_quantizer_ties_pick_first_index():
    cfg = MaskGITVQGANConfig(base_channels=32, channel_mult=(1,), z_channels=8, codebook_size=8, image_size=4)
    model = MaskGITVQGAN(cfg)
    book = torch.full((8, 8), 5.0)
    book[3], book[4] = 0.5, -0.5  # z = 0 is exactly equidistant from rows 3 and 4
    book[1] = book[6] = torch.arange(8.0) / 4  # duplicated rows
    with torch.no_grad():
        model.quantize.embedding.weight.copy_(book)
    z = torch.stack([torch.zeros(8), book[1]]).view(1, 2, 1, 8).permute(0, 3, 1, 2)  # B x z x 2 x 1
    ids, codes = model.quantize_latents(z)
    assert ids.tolist() == [[3, 1]]
    assert torch.equal(codes[0, :, 0, 0], book[3]) and torch.equal(codes[0, :, 1, 0], book[1])


def test_quantizer_float32_under_autocast():
    g = torch.Generator().manual_seed(0)
    p, c = 16, 32
    cfg = MaskGITVQGANConfig(base_channels=32, channel_mult=(1,), z_channels=c, codebook_size=2 * p, image_size=4)
    model = MaskGITVQGAN(cfg)
    v = torch.randn(p, c, generator=g) * 10
    delta = torch.randn(p, c, generator=g) * 0.05
    with torch.no_grad():
        model.quantize.embedding.weight.copy_(torch.stack([v, v + delta], 1).reshape(2 * p, c))
    z = (v + 0.75 * delta).T.reshape(1, c, 4, 4)  # nearest to row 2q+1, by a margin bf16 cannot resolve
    want = torch.arange(p) * 2 + 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ids, codes = model.quantize_latents(z.bfloat16().float())
        emb, flat = model.codebook, z.flatten(2)[0].T  # sanity: a bf16 distance would get some wrong
        naive = torch.addmm(emb.pow(2).sum(1), flat, emb.t(), alpha=-2).argmin(1)
    exact = (z.flatten(2)[0].T[:, None] - model.codebook[None]).pow(2).sum(-1).argmin(1)
    assert torch.equal(exact, want)
    assert torch.equal(ids[0], want) and codes.dtype == torch.float32
    assert not torch.equal(naive, want)


def test_runs_under_bf16_autocast(tiny):
    model, _, images = tiny
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        ids = model.encode_ids(images[:1])
        out = model.decode_ids(ids)
    assert ids.dtype == torch.int64 and torch.isfinite(out).all() and out.shape == (1, 3, 64, 64)


# ----------------------------------------------------------------------------- soft codes and training
def test_soft_codes(tiny):
    model = tiny[0]
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(3))
    onehot = F.one_hot(ids.view(2, 4, 4), 64).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(soft_codes(onehot, model.codebook), model.codes_from_ids(ids))
    probs = torch.softmax(torch.randn(2, 64, 4, 4), 1)
    manual = (probs[:, :, None] * model.codebook[None, :, :, None, None]).sum(1)
    torch.testing.assert_close(soft_codes(probs, model.codebook), manual)


def test_training_forward_backward(tiny):
    model = MaskGITVQGAN(TINY)
    model.load_state_dict(tiny[0].state_dict())
    images = tiny[2][:1]
    out = model(images)
    assert out.images.shape == images.shape and out.ids.shape == (1, 16)
    # straight-through: forward value = codebook rows (up to z + (zq - z) rounding)
    torch.testing.assert_close(out.codes.detach(), model.codes_from_ids(out.ids).detach())
    loss = F.mse_loss(out.images, images) + out.quantizer_loss
    assert torch.isfinite(loss) and out.quantizer_loss > 0
    loss.backward()
    for name in ("encoder.conv_in.weight", "encoder.conv_out.bias", "decoder.conv_out.weight",
                 "decoder.up.3.block.0.nin_shortcut.weight", "quantize.embedding.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_official_file_loads_through_adatok_load_and_matches_reference(tmp_path, tiny):
    import adatok

    sd = random_official_state_dict(TINY, seed=5)
    torch.save(sd, tmp_path / "maskgit-vqgan-shrunk.bin")
    model = adatok.load(tmp_path / "maskgit-vqgan-shrunk.bin", image_size=64)
    assert isinstance(model, MaskGITVQGAN) and model.config == TINY and not model.training
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        tokens = model.encode(images)  # the tokenizer API shared with TiTok
        recon = model.decode(tokens, clamp=False)
    assert torch.equal(tokens.ids, ref.encode_ids(sd, images))
    assert tokens.ids.shape == (2, 16) and tokens.lengths.tolist() == [16, 16]
    torch.testing.assert_close(recon, ref.decode_codes(sd, ref.codes_from_ids(sd, tokens.ids)), atol=1e-4, rtol=1e-5)
    assert torch.equal(model.decode(tokens), model.decode_ids(tokens.ids))
    # a TiTok file is not mistaken for a MaskGIT-VQGAN and vice versa
    with pytest.raises(adatok.CheckpointError, match="titok"):
        adatok.load("titok_tiny", weights=tmp_path / "maskgit-vqgan-shrunk.bin")
