"""Every recipe's tiny variant runs and overfits one batch (its loss goes down)."""

import csv

import pytest
import torch

import adatok
from adatok.train import run

from .conftest import tiny_run


def losses(out, column="loss_model"):
    with (out / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    return [float(r[column]) for r in rows if r.get(column)]


def first_and_last(values, k=3):
    return sum(values[:k]) / k, sum(values[-k:]) / k


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.manual_seed(0)
    return adatok.save(adatok.create_model("maskgit_vqgan_tiny"), tmp_path_factory.mktemp("t") / "teacher")


# GAN on for the last steps (exercises both phases), with a narrow discriminator for CPU speed.
NO_PERCEPTUAL = {"options.perceptual": "none", "options.gan_start": 14, "options.gan_weight": 0.01,
                 "options.disc_channels": 32}


@pytest.mark.parametrize(
    "task, model, extra",
    [
        ("vqgan", "maskgit_vqgan_tiny", {**NO_PERCEPTUAL, "model_overrides": {"image_size": 32}, "data.image_size": 32}),
        ("titok_single", "titok_pixels_tiny", NO_PERCEPTUAL),
        ("titok_single", "titok_vae_tiny", {"options.perceptual": "none", "options.gan_weight": 0.0}),
    ],
)
def test_pixel_recipes_overfit_one_batch(task, model, extra, photos, tmp_path):
    # the whole dataset is one batch of 4 (center crops): overfitting it must lower the loss
    cfg = tiny_run(task, tmp_path / "run", photos, model=model, **{"data.crop": "center", "data.flip": False,
                                                                   "data.train": str(photos), **extra})
    cfg["train"]["batch_size"] = 8
    exported = run(cfg)
    start, end = first_and_last(losses(tmp_path / "run", "recon"))
    assert end < 0.8 * start, (start, end)
    if extra.get("options.gan_weight"):
        assert losses(tmp_path / "run", "loss_disc")[-1] > 0  # the discriminator phase ran
    assert (tmp_path / "run" / "samples" / "step_0000010.png").exists()
    model = adatok.load(exported)  # the export is a normal adatok model
    size = model.image_size
    with torch.no_grad():
        assert model.reconstruct(torch.rand(1, 3, size, size)).shape == (1, 3, size, size)


def test_titok_two_stage_recipe(photos, teacher, tmp_path):
    s1 = tiny_run("titok_stage1", tmp_path / "s1", photos, model="titok_tiny", teacher=str(teacher),
                  **{"data.crop": "center", "data.flip": False})
    s1["train"]["batch_size"] = 8
    stage1 = run(s1)
    start, end = first_and_last(losses(tmp_path / "s1"))
    assert end < 0.8 * start
    model = adatok.load(stage1)
    teacher_model = adatok.load(teacher)
    # the pixel path came from the teacher and stage 1 did not touch it
    assert torch.equal(model.pixel_codebook.weight, teacher_model.codebook)
    with open(tmp_path / "s1" / "log.csv") as f:
        acc = [float(r["proxy_acc"]) for r in csv.DictReader(f)]
    assert acc[-1] > acc[0]

    s2 = tiny_run("titok_stage2", tmp_path / "s2", photos, model=str(stage1), **NO_PERCEPTUAL,
                  **{"data.crop": "center", "data.flip": False})
    s2["train"]["batch_size"] = 8
    stage2 = run(s2)
    start, end = first_and_last(losses(tmp_path / "s2", "recon"))
    assert end < start
    tuned = adatok.load(stage2)
    # stage 2 freezes the encoder, quantizer and latent tokens, and trains the decoders
    assert torch.equal(tuned.latent_tokens, model.latent_tokens)
    assert torch.equal(tuned.encoder.to_tokens.weight, model.encoder.to_tokens.weight)
    assert not torch.equal(tuned.pixel_decoder.conv_out.weight, model.pixel_decoder.conv_out.weight)


def test_classification_recipe(labelled, tmp_path):
    cfg = tiny_run("classify", tmp_path / "cls", labelled, model="vit_tiny_patch16_224",
                   model_overrides={"depth": 2, "embed_dim": 64, "num_heads": 2, "patch_size": 16},
                   **{"data.format": "imagefolder", "data.crop": "center", "data.flip": False,
                      "train.sample_every": 0, "options.label_smoothing": 0.0})
    cfg["train"]["batch_size"] = 8
    exported = run(cfg)
    start, end = first_and_last(losses(tmp_path / "cls"))
    assert end < 0.5 * start
    assert (exported / "model.safetensors").exists() and '"num_classes": 2' in (exported / "config.json").read_text()


def test_alit_two_stage_recipe(photos, teacher, tmp_path):
    s1 = tiny_run("alit_stage1", tmp_path / "s1", photos, model="alit_test_tiny", teacher=str(teacher),
                  model_overrides={"halting": "bernoulli"}, **{"data.crop": "center", "data.flip": False})
    stage1 = run(s1)
    start, end = first_and_last(losses(tmp_path / "s1"))
    assert end < 0.8 * start, (start, end)
    with open(tmp_path / "s1" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["ce_8"]) < float(rows[0]["ce_8"]) and float(rows[-1]["ce_32"]) < float(rows[0]["ce_32"])
    model, teacher_model = adatok.load(stage1), adatok.load(teacher)
    assert torch.equal(model.base.codebook, teacher_model.codebook)  # frozen base = the teacher
    assert model.config.halting == "bernoulli"

    s2 = tiny_run("alit_stage2", tmp_path / "s2", photos, model=str(stage1), **NO_PERCEPTUAL,
                  **{"data.crop": "center", "data.flip": False})
    stage2 = run(s2)
    with open(tmp_path / "s2" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["tokens"]) for r in rows[:5]] == [8, 16, 24, 32, 8]  # one iteration per step, cycling
    by_length = {}
    for r in rows:
        by_length.setdefault(r["tokens"], []).append(float(r["recon"]))
    assert all(v[-1] < v[0] for v in by_length.values()), by_length
    assert losses(tmp_path / "s2", "loss_disc")[-1] > 0
    tuned = adatok.load(stage2)
    assert not torch.equal(tuned.base.decoder.conv_out.weight, teacher_model.decoder.conv_out.weight)


def test_alit_stage1_needs_a_base(photos, tmp_path):
    from adatok.errors import ConfigError

    with pytest.raises(ConfigError, match="trained base VQGAN"):
        run(tiny_run("alit_stage1", tmp_path / "x", photos, model="alit_test_tiny"))


def test_recipes_train_from_webdataset_shards_with_the_cache_on(photos, labelled, tmp_path):
    from adatok.data import write_shards
    from adatok.errors import ConfigError

    write_shards(photos, tmp_path / "plain", samples_per_shard=3)
    write_shards(labelled, tmp_path / "classes", labelled=True, samples_per_shard=3)
    cfg = tiny_run("titok_single", tmp_path / "px", tmp_path / "plain", model="titok_pixels_tiny",
                   **{"options.perceptual": "none", "options.gan_weight": 0.0, "train.steps": 3,
                      "train.sample_every": 0, "data.cache": True, "data.workers": 1})
    assert adatok.load(run(cfg)).image_size == 64
    assert len(losses(tmp_path / "px", "recon")) == 3

    vit = {"model": "vit_tiny_patch16_224", "train.steps": 3, "train.sample_every": 0, "data.cache": True,
           "model_overrides": {"depth": 1, "embed_dim": 32, "num_heads": 2, "patch_size": 16}}
    exported = run(tiny_run("classify", tmp_path / "cls", tmp_path / "classes", **vit, **{"options.num_classes": 2}))
    assert '"num_classes": 2' in (exported / "config.json").read_text()
    with pytest.raises(ConfigError, match="num_classes"):  # shards hold class ids, not the class count
        run(tiny_run("classify", tmp_path / "cls2", tmp_path / "classes", **vit))
    with pytest.raises(ConfigError, match="no .cls labels"):
        run(tiny_run("classify", tmp_path / "cls3", tmp_path / "plain", **vit, **{"options.num_classes": 2}))


def test_alit_stage2_code_weight_keeps_the_decoder_predicting_the_base_codes(photos, teacher, tmp_path):
    """Stage 2 on pixels alone lets the decoder's probabilities of the base codes drift (the token-space
    confidence criterion reads them); ``options.code_weight`` keeps a cross-entropy on them."""
    from adatok.data import list_image_files, load_images

    images = load_images(list_image_files([photos]), 64)[0]

    def p_code(model_dir):  # mean probability of the base codes at the longest length
        model = adatok.load(model_dir, halting="threshold").eval()
        with torch.no_grad():
            out = model(images)
        probs = out.iterations[-1].logits.float().softmax(-1)
        return probs.gather(-1, out.gt[..., None]).mean().item()

    common = {"model": "alit_test_tiny", "teacher": str(teacher), "data.crop": "center", "data.flip": False,
              "options.perceptual": "none", "options.gan_weight": 0.0, "train.sample_every": 0}
    plain = run(tiny_run("alit_stage2", tmp_path / "plain", photos, **common))
    kept = run(tiny_run("alit_stage2", tmp_path / "kept", photos, **common, **{"options.code_weight": 1.0}))
    start, end = first_and_last(losses(tmp_path / "kept", "code_ce"))
    assert end < start
    assert "code_ce" not in (tmp_path / "plain" / "log.csv").read_text()
    kept_p, plain_p = p_code(kept), p_code(plain)
    assert kept_p > 2 * plain_p, (kept_p, plain_p)  # measured 0.19 vs 0.018
