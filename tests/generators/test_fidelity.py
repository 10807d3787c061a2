"""Official generator checkpoints reproduce the official outputs.

State dicts are built in the official key layout with random weights on shrunk configs (width 128,
4 heads, 32 tokens, the official 4096-code / 1000-class token space) and run through an
independent functional reference written from the spec (tests/reference/maskgit_gen_ref.py):
logits within 1e-4, and temperature-0 sampled ids identical for every guidance schedule.
"""

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import adatok
from adatok.errors import CheckpointError
from adatok.generators.convert import config_from_official, convert_official_state_dict
from reference import maskgit_gen_ref as ref

KEYS = Path(__file__).parents[1] / "reference" / "keys"
HEADS = 4
SHRUNK = {
    "bert": (lambda: ref.bert_shapes(width=128, depth=2, intermediate=512, num_tokens=32), ref.bert_logits),
    "uvit": (lambda: ref.uvit_shapes(width=128, num_hidden_layers=4, intermediate=512, num_tokens=32), ref.uvit_logits),
}


@pytest.fixture(scope="module", params=["bert", "uvit"])
def case(request):
    shapes, fn = SHRUNK[request.param]
    sd = ref.random_state_dict(shapes(), seed=0)
    model = adatok.create_model(config_from_official(None, sd), heads=HEADS).eval()
    model.load_state_dict(convert_official_state_dict(sd), strict=True)
    return request.param, sd, fn, model


def test_logits_match_reference(case):
    arch, sd, fn, model = case
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 4097, (3, 32), generator=g)  # image codes and [MASK] (4096)
    labels = torch.tensor([0, 417, 999])
    with torch.no_grad():
        cond = model(ids, labels).logits
        uncond = model(ids, torch.full((3,), -1)).logits
    want_c, want_u = fn(sd, ids, labels, HEADS), fn(sd, ids, labels, HEADS, drop_label=True)
    assert cond.shape == (3, 32, 4096)
    torch.testing.assert_close(cond, want_c, atol=1e-4, rtol=0)
    torch.testing.assert_close(uncond, want_u, atol=1e-4, rtol=0)
    assert (want_c - want_u).abs().max() > 0.1, "the class token must matter"


@pytest.mark.parametrize("schedule", ["constant", "linear", "power-cosine"])
def test_temperature_zero_ids_identical(case, schedule):
    arch, sd, fn, model = case
    labels = torch.tensor([1, 207, 360, 999])
    results = []
    for annealing in (False, True):
        want = ref.reference_generate(lambda i, c, d: fn(sd, i, c, HEADS, d), labels, 32, 4096, 3.0, schedule, 3.0,
                                      0.0, annealing, 8)
        got = model.generate(labels, steps=8, guidance=3.0, schedule=schedule, temperature=0.0,
                             softmax_annealing=annealing, guidance_pow=3.0)
        assert torch.equal(got.ids, want), (schedule, annealing)
        results.append(want)
    assert ((results[0] >= 0) & (results[0] < 4096)).all()


def test_schedules_change_the_samples(case):
    # the three schedules are different algorithms on these weights (so the test above discriminates)
    _, _, _, model = case
    labels = torch.tensor([1, 207])
    out = {s: model.generate(labels, steps=8, guidance=3.0, schedule=s, temperature=0.0).ids
           for s in ("constant", "linear", "power-cosine")}
    assert not torch.equal(out["constant"], out["linear"]) and not torch.equal(out["linear"], out["power-cosine"])


def _tsv(name):
    with open(KEYS / name) as f:
        return {r["key"]: tuple(json.loads(r["shape"].replace("(", "[").replace(")", "]").replace(",]", "]")))
                for r in csv.DictReader(f, delimiter="\t")}


@pytest.mark.parametrize("preset, tsv, shapes", [
    ("maskgit_titok_b64", "generator_titok_b64_vit.tsv", lambda: ref.bert_shapes(num_tokens=64)),
    ("maskgit_titok_s128", "generator_titok_s128_uvit.tsv", lambda: ref.uvit_shapes()),
])
def test_official_key_tables_convert_strictly(preset, tsv, shapes):
    table = _tsv(tsv)
    assert table == shapes(), "the reference builds the official key table"
    fake = {k: torch.empty(s, device="meta") for k, s in table.items()}
    converted = convert_official_state_dict(fake)
    with torch.device("meta"):
        model = adatok.create_model(preset)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected
    config = config_from_official(None, fake)
    assert config == adatok.get_config(preset)  # sizes, heads and the official sampling settings
    assert sum(v.numel() for v in fake.values()) == sum(p.numel() for p in model.parameters())


def test_hub_folder_and_bin_load(tmp_path):
    sd = ref.random_state_dict(SHRUNK["bert"][0](), seed=3)
    # official hub folder: config.json (with the unresolved interpolation the official files carry)
    folder = tmp_path / "generator_hub"
    folder.mkdir()
    cfg = {"experiment": {}, "model": {"vq_model": {"codebook_size": 4096, "num_latent_tokens": 32},
                                       "generator": {"model_type": "ViT", "hidden_size": 128, "num_attention_heads": 4,
                                                     "image_seq_len": "${model.vq_model.num_latent_tokens}",
                                                     "randomize_temperature": 2.0, "guidance_scale": 1.5,
                                                     "guidance_decay": "power-cosine", "num_steps": 6}}}
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file(sd, str(folder / "model.safetensors"))
    model = adatok.load(folder)
    assert model.config.heads == 4 and model.config.sampling.steps == 6
    assert model.config.sampling.schedule == "power-cosine" and model.config.sampling.guidance == 1.5
    # a bare .bin (with the legacy position_ids buffer) + a heads override
    torch.save({**sd, "model.embeddings.position_ids": torch.arange(33)[None]}, tmp_path / "gen.bin")
    bare = adatok.load(tmp_path / "gen.bin", heads=4)
    ids, labels = torch.randint(0, 4097, (2, 32)), torch.tensor([3, 4])
    with torch.no_grad():
        torch.testing.assert_close(bare(ids, labels).logits, ref.bert_logits(sd, ids, labels, 4), atol=1e-4, rtol=0)
        assert torch.equal(model(ids, labels).logits, bare(ids, labels).logits)
    adatok.save(bare, tmp_path / "ours")  # our format round-trips exactly
    again = adatok.load(tmp_path / "ours")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), bare.state_dict().values()))


def test_strict_errors_name_the_keys(tmp_path):
    sd = ref.random_state_dict(SHRUNK["uvit"][0](), seed=0)
    broken = {k: v for k, v in sd.items() if k != "out_blocks.1.skip_linear.weight"}
    torch.save(broken, tmp_path / "missing.bin")
    with pytest.raises(CheckpointError, match="missing key.*out_blocks.1.skip.weight"):
        adatok.load(tmp_path / "missing.bin", heads=4)
    torch.save({**sd, "extra.weight": torch.zeros(1)}, tmp_path / "extra.bin")
    with pytest.raises(CheckpointError, match="unexpected key.*extra.weight"):
        adatok.load(tmp_path / "extra.bin", heads=4)
    # the wrong preset for a file: a uvit checkpoint into the bert preset, shapes named
    torch.save(sd, tmp_path / "uvit.bin")
    with pytest.raises(CheckpointError, match="does not fit MaskGIT"):
        adatok.load("maskgit_tiny", weights=tmp_path / "uvit.bin")
