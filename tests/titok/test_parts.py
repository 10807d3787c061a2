"""TiTok's parts are chosen by type once: one quantizer signature, one output path per head."""

import pytest
import torch

import adatok
from adatok.layers import ProxyCodeHead
from adatok.quantizers import CodeUsage, DiagonalGaussian, VectorQuantizer, nearest_code
from adatok.tokenizers.titok.heads import PixelHead, PixelOutput, ProxyCodeOutput


def test_quantizers_share_one_call_signature():
    z = torch.randn(2, 5, 8)
    vq, kl = VectorQuantizer(16, 8, l2_norm=False), DiagonalGaussian(4)
    for q in (vq, kl):
        out = q(z, sample=True, generator=torch.Generator().manual_seed(0))
        assert out.codes.shape[:2] == (2, 5) and out.loss.ndim == 0
    assert torch.equal(vq(z, sample=True).ids, vq(z).ids)  # nearest-code VQ ignores sample
    assert vq.codebook_size == 16 and kl.codebook_size is None
    assert kl(z, sample=True).ids is None


def test_nearest_returns_the_nearest_code_ids_and_rows():
    vq = VectorQuantizer(32, 6, l2_norm=False, init="normal")
    z = torch.randn(3, 4, 6)
    ids, codes = vq.nearest(z)
    assert torch.equal(ids.flatten(), nearest_code(z.reshape(-1, 6), vq.embedding.weight))
    assert torch.equal(codes, vq.embedding.weight[ids])


def test_code_usage_restarts_unused_codes_from_the_batch():
    weight = torch.full((4, 2), 100.0)
    usage = CodeUsage(4)  # starts at 0: the first batch seeds the codes it does not pick
    z = torch.randn(8, 2) * 0.1
    usage.restart_(weight, torch.zeros(8, dtype=torch.long), z)
    assert (weight[1:].abs() < 1).all() and usage.usage[1:].eq(1).all()
    assert "usage" in usage.state_dict()


@pytest.mark.parametrize("preset, head, output, discrete", [
    ("titok_tiny", ProxyCodeHead, ProxyCodeOutput, True),
    ("titok_pixels_tiny", PixelHead, PixelOutput, True),
    ("titok_vae_tiny", PixelHead, PixelOutput, False),
])
def test_titok_parts_follow_the_config(preset, head, output, discrete):
    m = adatok.create_model(preset)
    assert isinstance(m.decoder.head, head) and isinstance(m.output, output)
    assert m.discrete is discrete and isinstance(m.quantizer, VectorQuantizer if discrete else DiagonalGaussian)
    assert m.last_layer() is (m.pixel_decoder.conv_out.weight if output is ProxyCodeOutput
                              else m.decoder.head.conv_out.weight)
    assert not any(k.startswith("output") for k in m.state_dict())


def test_forward_and_decode_share_the_output_path():
    m = adatok.create_model("titok_tiny").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = m(x, sample=False)
        assert torch.equal(out.images, m.decode(out.tokens, clamp=False))
        assert torch.equal(out.logits, m.decode_logits(out.tokens.codes))
        assert m(x, decode_pixels=False).images is None
