"""Official TiTok checkpoints reproduce the official outputs.

State dicts are built in the official key layout with random weights (shrunk sizes, as in
specs/titok.md §14) and run through an independent functional reference written from the spec
(tests/reference/titok_ref.py). Codes must be identical; floats within 1e-4 (float32).
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import adatok
from adatok.errors import CheckpointError
from adatok.tokenizers.titok.convert import config_from_official, convert_official_state_dict
from reference import titok_ref as ref

HEADS = 4
SHRUNK = dict(enc_width=128, enc_depth=2, dec_width=128, dec_depth=2, num_tokens=32, image_size=64, pixel_channels=32)
CASES = {
    # name: (official_titok_shapes kwargs, reference kwargs)
    "legacy_vq": (dict(token_size=12, codebook_size=4096, legacy=True), dict(legacy=True, use_l2_norm=True)),
    "vq8k_rgb": (dict(token_size=64, codebook_size=8192, legacy=False), dict(legacy=False, use_l2_norm=False)),
    "vae": (dict(token_size=16, codebook_size=2, legacy=False, vae=True), dict(legacy=False, vae=True)),
}


def build(case, seed=0):
    shapes_kw, ref_kw = CASES[case]
    sd = ref.random_official_state_dict(ref.official_titok_shapes(**SHRUNK, **shapes_kw), seed=seed)
    return sd, ref_kw


def our_model(sd, case):
    # A bare official file cannot tell the head count of a non-standard width: say it.
    config = config_from_official(None, sd)
    model = adatok.create_model(config, **{"encoder.heads": HEADS, "decoder.heads": HEADS}).eval()
    model.load_state_dict(convert_official_state_dict(sd), strict=True)
    return model


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("case", ["legacy_vq", "vq8k_rgb"])
def test_vq_codes_identical_and_floats_close(case, images):
    sd, ref_kw = build(case)
    model = our_model(sd, case)
    want = ref.ref_encode(sd, images, num_heads=HEADS, patch_size=16, **ref_kw)
    with torch.no_grad():
        tokens = model.encode(images)
        got_images = model.decode(tokens, clamp=False)
        from_ids = model.decode_ids(tokens.ids, clamp=False)
    assert torch.equal(tokens.ids, want["ids"])
    # ours: B x K x C; official: B x C x 1 x K
    torch.testing.assert_close(tokens.latents, want["latents"][:, :, 0].transpose(1, 2), atol=1e-4, rtol=0)
    torch.testing.assert_close(tokens.codes, want["codes"][:, :, 0].transpose(1, 2), atol=1e-5, rtol=0)
    ref_dec = ref.ref_decode_ids(sd, want["ids"], num_heads=HEADS, image_size=64, **{k: v for k, v in ref_kw.items()})
    torch.testing.assert_close(from_ids, ref_dec["images"], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got_images, ref_dec["images"], atol=1e-4, rtol=1e-5)
    if case == "legacy_vq":
        with torch.no_grad():
            logits = model.decode_logits(model.quantizer.lookup(tokens.ids))
        torch.testing.assert_close(logits, ref_dec["logits"], atol=1e-4, rtol=0)
    assert ref_dec["images"].abs().max() > 1.5, "random weights should drive pixels well outside [0, 1]"


def test_vae_posterior_and_decode(images):
    sd, ref_kw = build("vae")
    model = our_model(sd, "vae")
    want = ref.ref_encode(sd, images, num_heads=HEADS, patch_size=16, **ref_kw)
    with torch.no_grad():
        tokens = model.encode(images)
        out = model.decode(tokens, clamp=False)
    assert tokens.ids is None
    torch.testing.assert_close(tokens.codes, want["mean"][:, :, 0].transpose(1, 2), atol=1e-4, rtol=0)
    ref_dec = ref.ref_decode(sd, want["mean"], num_heads=HEADS, legacy=False, image_size=64)
    torch.testing.assert_close(out, ref_dec["images"], atol=1e-4, rtol=1e-5)
    # sampling draws around the mean with the clamped log-variance
    with torch.no_grad():
        s = model.encode(images, sample=True).codes
    assert not torch.allclose(s, tokens.codes)


def test_legacy_reshape_is_what_makes_codes_match(images):
    sd, _ = build("legacy_vq")
    model = our_model(sd, "legacy_vq")
    model.encoder.legacy_reshape = False
    want = ref.ref_encode(sd, images, num_heads=HEADS, legacy=True, patch_size=16)
    with torch.no_grad():
        assert not torch.equal(model.encode(images).ids, want["ids"])


def test_load_plain_bin_and_hub_folder(tmp_path, images):
    sd, ref_kw = build("legacy_vq", seed=3)
    want = ref.ref_encode(sd, images, num_heads=HEADS, patch_size=16, **ref_kw)["ids"]
    # plain .bin as torch.save(state_dict)
    torch.save(sd, tmp_path / "tokenizer_titok_shrunk.bin")
    model = adatok.load(tmp_path / "tokenizer_titok_shrunk.bin", **{"encoder.heads": HEADS, "decoder.heads": HEADS})
    assert not model.training
    with torch.no_grad():
        assert torch.equal(model.encode(images).ids, want)
    # hub folder: config.json in the official (OmegaConf dump) layout + model.safetensors
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file(sd, str(folder / "model.safetensors"))
    vq_model = {"codebook_size": 4096, "token_size": 12, "use_l2_norm": True, "commitment_cost": 0.25,
                "vit_enc_model_size": "small", "vit_dec_model_size": "small", "vit_enc_patch_size": 16,
                "vit_dec_patch_size": 16, "num_latent_tokens": 32, "finetune_decoder": True, "is_legacy": True}
    official = {"experiment": {"tokenizer_checkpoint": "tokenizer_titok_shrunk.bin"}, "model": {"vq_model": vq_model},
                "dataset": {"preprocessing": {"crop_size": 64}}}
    (folder / "config.json").write_text(json.dumps(official, indent=4))
    model = adatok.load(folder, **{"encoder.heads": HEADS, "decoder.heads": HEADS})
    with torch.no_grad():
        assert torch.equal(model.encode(images).ids, want)
    assert model.config.legacy_reshape and model.config.decoder_head == "proxy"


def test_key_table_covers_the_real_s128_checkpoint():
    """Every key of the official titok_s128 checkpoint (specs/titok_keys) maps onto our model
    with the same number of elements, and nothing of ours is left unfilled."""
    tsv = Path(__file__).parents[1] / "reference" / "keys" / "tokenizer_titok_s128.tsv"
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:] if line.strip()]
    shapes = {k: tuple(int(x) for x in s.strip("()").split(",") if x.strip()) for k, s, _ in rows}
    assert len(shapes) == 308
    official = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    converted = convert_official_state_dict(official)
    with torch.device("meta"):
        model = adatok.create_model("titok_s128")
    ours = model.state_dict()
    assert set(converted) == set(ours)
    for k, v in converted.items():
        assert tuple(v.shape) == tuple(ours[k].shape), k
    assert config_from_official(None, official) == adatok.get_config("titok_s128")


def test_official_config_inference_for_single_stage_and_vae():
    for case, preset in [("vq8k_rgb", None), ("vae", None)]:
        sd, _ = build(case)
        cfg = config_from_official(None, sd)
        assert cfg.decoder_head == "pixels" and not cfg.legacy_reshape
        assert cfg.quantizer == ("kl" if case == "vae" else "vq")
        assert cfg.encoder.width == 128 and cfg.encoder.depth == 2 and cfg.num_tokens == 32


def test_wrong_or_broken_checkpoints_give_one_line_errors(tmp_path):
    sd, _ = build("legacy_vq")
    path = tmp_path / "tok.bin"
    torch.save(sd, path)
    # truncated file
    data = path.read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.bin") as e:
        adatok.load(tmp_path / "cut.bin")
    assert "\n" not in str(e.value)
    # empty file
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        adatok.load(tmp_path / "empty.safetensors")
    # a checkpoint of another size passed for a preset: every mismatch is named
    with pytest.raises(CheckpointError, match="shape mismatch") as e:
        adatok.load("titok_s128", weights=path)
    assert "tok.bin" in str(e.value) and "\n" not in str(e.value)
    # a checkpoint with a foreign key
    bad = dict(sd, **{"something.else": torch.zeros(1)})
    torch.save(bad, tmp_path / "extra.bin")
    with pytest.raises(CheckpointError, match="unexpected key.*something.else"):
        adatok.load(tmp_path / "extra.bin")
    # not a TiTok checkpoint at all
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.bin")
    with pytest.raises(CheckpointError, match="not a checkpoint adatok recognises"):
        adatok.load(tmp_path / "other.bin")


def test_hub_repo_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="yucornetto/tokenizer_titok_l32_imagenet"):
        adatok.load("titok_l32")
