"""ALIT over the KL-16 VAE: official-format checkpoints load strictly and reproduce the official
forward (tests/reference/alit_vae_ref.py, an adatok-free transcription from the spec) per
iteration; the KL-VAE alone; per-image selection, decode from ids, bad input; sizes."""

import argparse

import pytest
import torch

import adatok
from adatok.errors import ConfigError, InputError
from adatok.pixel import KLVAE, KLVAEConfig
from reference import alit_vae_ref as ref

from .conftest import assert_decode_ids_match_official

CFG = ref.tiny_config()
HEADS = {"heads": CFG["heads"]}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: a second intra-op thread buys nothing and, on a 2-core machine shared with
    # another job, makes this file ~20x slower (thread contention). Restored afterwards.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_official(path, sd):
    decoy = {k: torch.zeros_like(v) for k, v in sd.items()}  # the loader must take "ema"
    torch.save({"model": decoy, "ema": sd, "epoch": 3, "args": argparse.Namespace(model="alit_vae_tiny")}, path)
    return path


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, CFG["image_size"], CFG["image_size"], generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    sd = ref.random_official_state_dict(CFG, seed=0, with_gan_losses=True)
    return sd, write_official(tmp_path_factory.mktemp("alit_vae") / "alit_tiny_vae_quantized_latents.pth", sd)


@pytest.fixture(scope="module")
def model(official):
    return adatok.load(official[1], **HEADS)  # eval mode: posterior mean


def compare(ours, r):
    torch.testing.assert_close(ours.base_latents, r["z"], atol=1e-4, rtol=0)
    assert ours.gt is None and len(ours.iterations) == len(r["iters"]) == CFG["max_iters"]
    for it, o in zip(ours.iterations, r["iters"]):
        assert (it.ids is None) if o["ids"] is None else torch.equal(it.ids, o["ids"])
        for name in ("latent_tokens", "latents", "codes"):
            torch.testing.assert_close(getattr(it, name), o[name], atol=1e-4, rtol=0, msg=name)
        torch.testing.assert_close(it.pred_latents, o["decoded"], atol=1e-4, rtol=0)
        torch.testing.assert_close(it.images, o["recon"], atol=1e-4, rtol=0)
        assert it.logits is None and it.p_gt is None and it.halted is None


def test_kl_vae_matches_reference(images):
    sd = {k[len(ref.VAE):]: v for k, v in ref.random_official_state_dict(CFG, seed=4).items() if k.startswith(ref.VAE)}
    vae = KLVAE(KLVAEConfig(base_channels=32, embed_dim=8, image_size=64)).eval()
    vae.load_state_dict(sd, strict=True)
    with torch.no_grad():
        mean, logvar = vae.posterior(images)
        moments = ref.vae_moments(sd, CFG, images, prefix="")
        torch.testing.assert_close(torch.cat([mean, logvar], 1), moments.clamp(-30, 20), atol=1e-4, rtol=0)
        z = vae.encode_latents(images, sample=True, generator=torch.Generator().manual_seed(5))
        z_ref = ref.vae_tokens(sd, CFG, images, sample=True, generator=torch.Generator().manual_seed(5), prefix="")
        torch.testing.assert_close(z, z_ref, atol=1e-4, rtol=0)
        assert not torch.allclose(z, vae.encode_latents(images))  # the sample is not the mean
        torch.testing.assert_close(vae.decode_latents(z, unscale=False), ref.vae_decode(sd, CFG, z, prefix=""),
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(vae.decode_latents(z), ref.vae_decode(sd, CFG, z / 0.2325, prefix=""),
                                   atol=1e-4, rtol=0)


def test_standalone_kl_vae_file_loads(tmp_path, images):
    # MAR's kl16.ckpt layout: {"model": AutoencoderKL state dict}; it works on [-1, 1] pixels
    sd = {k[len(ref.VAE):]: v for k, v in ref.random_official_state_dict(CFG, seed=4).items() if k.startswith(ref.VAE)}
    torch.save({"model": dict(sd, **{"loss.logvar": torch.zeros(())})}, tmp_path / "kl.ckpt")
    vae = adatok.load(tmp_path / "kl.ckpt")
    c = vae.config
    assert isinstance(vae, KLVAE) and c.signed_pixels and c.encoder_attn_levels == (4,) and c.decoder_attn_levels == ()
    assert (c.base_channels, c.embed_dim, c.num_res_blocks, c.channel_mult) == (32, 8, 2, (1, 1, 2, 2, 4))
    with torch.no_grad():
        expect = ref.vae_moments(sd, CFG, images * 2 - 1, prefix="").chunk(2, 1)[0]
        torch.testing.assert_close(vae.posterior(images)[0], expect, atol=1e-4, rtol=0)


@pytest.mark.parametrize("sampling", ["always", "never"])
def test_rollout_matches_official(official, images, sampling):
    sd, path = official
    m = adatok.load(path, **HEADS, vae_sampling=sampling)
    g = lambda: torch.Generator().manual_seed(11)  # noqa: E731
    with torch.no_grad():
        ours = m.rollout(images, pixels="all", generator=g())
    compare(ours, ref.official_rollout(sd, CFG, images, sample=sampling == "always", generator=g()))


def test_eval_mode_uses_the_mean_training_mode_samples(model, official, images):
    sd, _ = official
    assert model.config.vae_sampling == "training" and not model.training
    with torch.no_grad():
        compare(model.rollout(images), ref.official_rollout(sd, CFG, images, sample=False))
        model.train()
        try:
            out = model(images, iters=1, generator=torch.Generator().manual_seed(2))
        finally:
            model.eval()
    z_ref = ref.vae_tokens(sd, CFG, images, sample=True, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(out.base_latents, z_ref, atol=1e-4, rtol=0)


def test_continuous_latents_match_official(tmp_path, images):
    cfg = ref.tiny_config(quantized=False)
    sd = ref.random_official_state_dict(cfg, seed=1)
    m = adatok.load(write_official(tmp_path / "continuous.pth", sd), **HEADS)
    assert not m.config.quantized and m.config.is_vae
    with torch.no_grad():
        compare(m.rollout(images, pixels="all"), ref.official_rollout(sd, cfg, images, sample=False))


def test_decode_ids_matches_official_decode(model, official, images):
    sd, _ = official
    with torch.no_grad():
        assert_decode_ids_match_official(model, ref, sd, CFG, ref.official_rollout(sd, CFG, images, sample=False))


def test_per_image_selection_equals_choice_from_full_rollout(model, images):
    with torch.no_grad():
        full = model.rollout(images)
        l1 = torch.stack([(it.images - images).abs().mean(dim=(1, 2, 3)) for it in full.iterations], 1)
        threshold = float(l1.min(1).values.median())  # some images meet it, at different iterations
        sel = model.select(images, "l1", threshold)
    met = l1 < threshold
    assert 0 < int(met.any(1).sum()) < 3  # some images stop early, the others keep their best
    chosen = torch.where(met.any(1), met.float().argmax(1), l1.argmin(1))
    assert torch.equal(sel.tokens.lengths, torch.tensor(model.config.token_counts)[chosen])
    for b in range(3):
        it = full.iterations[int(chosen[b])]
        assert torch.equal(sel.tokens.ids[b, : it.num_tokens], it.ids[b])
        assert (sel.tokens.ids[b, it.num_tokens :] == -1).all()
        torch.testing.assert_close(sel.images[b], it.images[b].clamp(0, 1), atol=1e-4, rtol=0)
        ran = int(chosen[b]) + 1 if bool(met[b].any()) else CFG["max_iters"]
        torch.testing.assert_close(sel.errors[b, :ran], l1[b, :ran], atol=1e-4, rtol=0)


def test_decode_ids_equals_the_reconstruction_of_select(model, images):
    with torch.no_grad():
        l1 = (model.rollout(images, pixels=[0]).iterations[0].images - images).abs().mean(dim=(1, 2, 3))
        sel = model.select(images, "l1", float(l1.median()))
        assert len(sel.tokens.lengths.unique()) > 1
        torch.testing.assert_close(model.decode_ids(sel.tokens.ids, sel.tokens.lengths), sel.images, atol=1e-4, rtol=0)
        budget = model.select(images, "budget", 16)  # token-space: one pixel decode, at the end
        assert budget.iterations_run == 2 and budget.tokens.lengths.tolist() == [16] * 3
        torch.testing.assert_close(model.decode(budget.tokens), budget.images, atol=1e-4, rtol=0)
        psnr = model.select(images, "psnr", 60.0, max_tokens=24)  # never met: capped, best of 3
        assert psnr.iterations_run == 3 and psnr.tokens.lengths.max() <= 24


def test_bad_input(model):
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(InputError, match="confidence criterion .* VAE base .* use a pixel criterion"):
        model.select(x, "confidence", 0.5)
    with pytest.raises(InputError, match="VAE base"):
        model.encode(x, "confidence")
    with pytest.raises(InputError, match="VAE base"):
        model.calibrate_confidence(x, 0.1)
    with pytest.raises(ConfigError, match="halting='off'"):
        adatok.create_model("alit_vae_test_tiny", halting="threshold")
    with pytest.raises(ConfigError, match="needs base=KLVAEConfig"):
        adatok.create_model("alit_test_tiny", base_kind="vae")
    with pytest.raises(ConfigError, match="vae_sampling"):
        adatok.create_model("alit_vae_test_tiny", vae_sampling="sometimes")
    with pytest.raises(ConfigError, match="latent_scale"):
        KLVAEConfig(latent_scale=0.0)
    with pytest.raises(ConfigError, match="encoder_attn_levels"):
        KLVAEConfig(encoder_attn_levels=(5,))


def test_config_read_off_the_checkpoint_and_round_trip(model, tmp_path, images):
    c = model.config
    assert c.base_kind == "vae" and c.halting == "off" and not c.vae_rescale_decode
    assert (c.width, c.depth, c.tokens_per_iter, c.max_iters, c.token_dim, c.codebook_size) == (
        64, 2, 8, 4, 8, CFG["codebook_size"])
    assert c.base == KLVAEConfig(base_channels=32, embed_dim=8, image_size=64)
    back = adatok.load(adatok.save(model, tmp_path / "alit_vae"))
    assert back.config == c
    with torch.no_grad():
        assert torch.equal(back.encode(images).ids, model.encode(images).ids)


def test_official_key_table_covers_every_full_size_key():
    from adatok.convert_utils import check_against_model
    from adatok.tokenizers.alit.convert import convert_official_state_dict

    for quantized, preset in ((True, "alit_small_vae"), (False, "alit_small_vae_continuous")):
        shapes = ref.official_alit_vae_shapes(ref.official_config("small", quantized), with_gan_losses=True)
        assert sum(k.startswith(ref.VAE) for k in shapes) == 312  # spec §11
        assert shapes["decoder.ffn.2.weight"] == (16, 2048) and shapes["patch_embed.weight"] == (1008, 3, 16, 16)
        converted = convert_official_state_dict({k: torch.empty(s, device="meta") for k, s in shapes.items()})
        with torch.device("meta"):
            m = adatok.create_model(preset)
        check_against_model(converted, m)
        assert len(converted) == len(m.state_dict())


@pytest.mark.parametrize("preset, total, alit_part", [
    ("alit_small_vae", 272_107_999, 205_651_980),
    ("alit_small_vae_continuous", 272_058_847, 205_602_828),
])
def test_parameter_counts_equal_the_official_models(preset, total, alit_part):
    with torch.device("meta"):
        m = adatok.create_model(preset)
    n = sum(p.numel() for p in m.parameters())
    assert n == total and n - sum(p.numel() for p in m.base.parameters()) == alit_part


def test_rescaled_decoding_divides_by_the_scale(model, images):
    m = adatok.create_model(model.config, vae_rescale_decode=True).eval()
    m.load_state_dict(model.state_dict())
    with torch.no_grad():
        pred = model.rollout(images, pixels=()).iterations[0].base_input
        torch.testing.assert_close(m.base_pixels(pred), model.base_pixels(pred / 0.2325), atol=1e-5, rtol=0)


def _recipe(task, out, data, steps, **extra):
    return {"task": task, "out": str(out), **extra,
            "data": {"train": str(data), "image_size": 64, "workers": 0, "num_samples": 1, "crop": "center",
                     "flip": False},
            "optim": {"lr": 1e-3, "betas": [0.9, 0.99], "weight_decay": 0.0, "warmup_steps": 0, "schedule": "constant"},
            "train": {"steps": steps, "batch_size": 2, "log_every": 1, "ckpt_every": steps, "sample_every": steps,
                      "ema_decay": 0.9, "tensorboard": False, "seed": 0}}


def test_two_stage_training_over_the_vae(tmp_path):
    import csv
    from pathlib import Path

    from adatok.train import run

    photos = Path(adatok.__file__).parent / "data" / "samples"
    torch.manual_seed(0)
    teacher = adatok.save(adatok.create_model("kl_vae_tiny"), tmp_path / "teacher")
    stage1 = run(_recipe("alit_stage1", tmp_path / "s1", photos, 6, model="alit_vae_test_tiny", teacher=str(teacher)))
    with open(tmp_path / "s1" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["mse_8"]) < float(rows[0]["mse_8"])  # the latent regression learns
    m, t = adatok.load(stage1), adatok.load(teacher)
    assert torch.equal(m.base.decoder.conv_out.weight, t.decoder.conv_out.weight)  # frozen base = the teacher
    stage2 = run(_recipe("alit_stage2", tmp_path / "s2", photos, 2, model=str(stage1),
                         options={"perceptual": "none", "gan_weight": 0.0}))
    tuned = adatok.load(stage2)
    assert tuned.config.is_vae
    assert not torch.equal(tuned.base.decoder.conv_out.weight, t.decoder.conv_out.weight)  # the VAE trains
    from adatok.errors import ConfigError

    with pytest.raises(ConfigError, match="code_weight needs a VQGAN base"):  # no base codes to predict
        run(_recipe("alit_stage2", tmp_path / "s2c", photos, 2, model=str(stage1),
                    options={"perceptual": "none", "gan_weight": 0.0, "code_weight": 1.0}))
