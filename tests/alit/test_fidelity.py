"""Official ALIT checkpoints load strictly and reproduce the official forward per iteration.

The oracle (tests/reference/alit_ref.py) is an independent functional transcription of the
official code from the spec, importing nothing from adatok; checkpoints are built in the official
layout (the ``.pth`` training dict with ``model``/``ema``/``args`` and the GAN loss modules) from
random weights on a shrunk config.
"""

import argparse

import pytest
import torch

import adatok
from adatok.errors import CheckpointError
from reference import alit_ref

from .conftest import assert_decode_ids_match_official

CFG = alit_ref.tiny_config()
HEADS = {"heads": CFG["heads"]}  # a bare file cannot tell the head count of a non-official width


def write_official(path, sd):
    decoy = {k: torch.zeros_like(v) for k, v in sd.items()}  # "model" differs: the loader must take "ema"
    torch.save({"model": decoy, "ema": sd, "epoch": 199, "args": argparse.Namespace(model="alit_tiny_test")}, path)
    return path


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(3)
    return torch.rand(3, 3, CFG["image_size"], CFG["image_size"], generator=g)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    sd = alit_ref.halting_friendly_state_dict(alit_ref.random_official_state_dict(CFG, seed=0, with_gan_losses=True), CFG)
    return sd, write_official(tmp_path_factory.mktemp("alit") / "alit_tiny_vqgan_quantized_latents.pth", sd)


def load(path, **overrides):
    return adatok.load(path, **HEADS, **overrides)


def compare(ours, ref):
    assert torch.equal(ours.gt, ref["gt"])
    torch.testing.assert_close(ours.base_latents, ref["z"], atol=1e-4, rtol=0)
    assert len(ours.iterations) == len(ref["iters"]) == CFG["max_iters"]
    for it, r in zip(ours.iterations, ref["iters"]):
        if r["ids"] is None:
            assert it.ids is None
        else:
            assert torch.equal(it.ids, r["ids"])
        for name in ("latent_tokens", "latents", "codes", "logits", "p_gt"):
            torch.testing.assert_close(getattr(it, name), r[name], atol=1e-4, rtol=0, msg=name)
        torch.testing.assert_close(it.soft_codes, r["soft_codes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(it.images, r["recon"], atol=1e-4, rtol=0)
        if it.halted is not None:
            assert torch.equal(it.halted, r["halt"])


@pytest.mark.parametrize("halting", ["off", "threshold"])
def test_rollout_matches_official(official, images, halting):
    sd, path = official
    model = load(path, halting=halting)
    with torch.no_grad():
        ours = model.rollout(images, pixels="all")
    ref = alit_ref.official_rollout(sd, CFG, images, halting=halting, threshold=0.55)
    if halting == "threshold":  # the weights make halting fire, but not everywhere
        frac = torch.stack([r["halt"].float().mean() for r in ref["iters"]])
        assert (frac > 0.05).all() and (frac < 0.95).all(), frac
    compare(ours, ref)


def test_official_bernoulli_rule_with_the_same_generator(official, images):
    sd, path = official
    model = load(path, halting="bernoulli")
    with torch.no_grad():
        ours = model.rollout(images, pixels="all", generator=torch.Generator().manual_seed(11))
    ref = alit_ref.official_rollout(sd, CFG, images, halting="bernoulli", threshold=0.55,
                                    generator=torch.Generator().manual_seed(11))
    compare(ours, ref)


def test_continuous_latents_match_official(tmp_path, images):
    cfg = alit_ref.tiny_config(quantized=False)
    sd = alit_ref.random_official_state_dict(cfg, seed=1)
    model = load(write_official(tmp_path / "continuous.pth", sd), halting="off")
    assert not model.config.quantized
    with torch.no_grad():
        ours = model.rollout(images, pixels="all")
    compare(ours, alit_ref.official_rollout(sd, cfg, images, halting="off"))


def test_decode_from_codes_matches_official_reconstruction(official, images):
    sd, path = official
    model = load(path, halting="threshold")
    with torch.no_grad():
        assert_decode_ids_match_official(model, alit_ref, sd, CFG,
                                         alit_ref.official_rollout(sd, CFG, images, halting="threshold"))


def test_per_image_selection_equals_official_encode_at_batch_size_one(official, images):
    sd, path = official
    model = load(path, halting="threshold")
    ref = alit_ref.official_rollout(sd, CFG, images, halting="threshold")
    l1 = torch.stack([(r["recon"] - images).abs().mean(dim=(1, 2, 3)) for r in ref["iters"]], 1)
    threshold = float(l1[:, 1].median())
    with torch.no_grad():
        sel = model.select(images, "l1", threshold)
    for b in range(3):
        k, latent_tokens = alit_ref.official_encode(sd, CFG, images[b : b + 1], threshold, halting="threshold")
        n = CFG["tokens_per_iter"] * (k + 1)
        assert int(sel.tokens.lengths[b]) == n
        assert torch.equal(sel.tokens.ids[b, :n], ref["iters"][k]["ids"][b])
        torch.testing.assert_close(latent_tokens[0], ref["iters"][k]["latent_tokens"][b], atol=1e-4, rtol=0)


def test_config_read_off_the_checkpoint(official):
    _, path = official
    model = load(path)
    c = model.config
    assert (c.width, c.depth, c.heads, c.tokens_per_iter, c.max_iters, c.token_dim) == (
        CFG["width"], CFG["depth"], CFG["heads"], CFG["tokens_per_iter"], CFG["max_iters"], CFG["token_dim"])
    assert c.codebook_size == CFG["codebook_size"] and c.quantized
    assert (c.base.base_channels, c.base.z_channels, c.base.codebook_size) == (
        CFG["vq_base_channels"], CFG["vq_z_channels"], CFG["vq_codebook_size"])
    assert c.image_size == CFG["image_size"]
    # the official sizes get the official head counts without an override
    from adatok.tokenizers.alit.convert import _heads

    assert _heads(1024, 8) == 8 and _heads(1024, 16) == 16 and _heads(768, 12) == 12


def test_official_key_table_covers_every_full_size_key():
    # the full-size key layout of each released model converts onto our model 1:1 (shapes only)
    from adatok.convert_utils import check_against_model
    from adatok.tokenizers.alit.convert import convert_official_state_dict

    for size, preset in (("small", "alit_small"), ("base", "alit_base")):
        shapes = alit_ref.official_alit_shapes(alit_ref.official_config(size, True), with_gan_losses=True)
        meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
        converted = convert_official_state_dict(meta)
        with torch.device("meta"):
            model = adatok.create_model(preset)
        check_against_model(converted, model)


def test_bad_checkpoints(tmp_path, official):
    sd, _ = official
    no_base = {k: v for k, v in sd.items() if not k.startswith("base_tokenizer.")}
    with pytest.raises(CheckpointError, match="lacks its VQGAN"):
        load(write_official(tmp_path / "nobase.pth", no_base))
    extra = dict(sd, **{"encoder_extra_thing": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected key"):
        load(write_official(tmp_path / "extra.pth", extra))
    wrong = dict(sd, **{"decoder.ffn.2.weight": torch.zeros(7, sd["decoder.ffn.2.weight"].shape[1])})
    with pytest.raises(CheckpointError, match="decoder.head.fc2.weight"):
        load(write_official(tmp_path / "wrong.pth", wrong))
    (tmp_path / "cut.pth").write_bytes((tmp_path / "extra.pth").read_bytes()[:500])
    with pytest.raises(CheckpointError, match="cut.pth"):
        load(tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="holds a alit model, not a titok"):
        adatok.load("titok_s128", weights=official[1])


@pytest.mark.parametrize("preset, total, alit_part", [
    ("alit_small", 262_048_399, 207_532_812),
    ("alit_small_continuous", 261_999_247, 207_483_660),
    ("alit_base", 228_689_551, 174_173_964),
    ("alit_semilarge", 463_587_983, 409_072_396),
    ("alit_tiny", 107_352_719, 52_837_132),
])
def test_parameter_counts_equal_the_official_models(preset, total, alit_part):
    # spec alit.md §2, measured on the official builders (inference model = ALIT + VQGAN)
    with torch.device("meta"):
        model = adatok.create_model(preset)
    n = sum(p.numel() for p in model.parameters())
    assert n == total and n - sum(p.numel() for p in model.base.parameters()) == alit_part
