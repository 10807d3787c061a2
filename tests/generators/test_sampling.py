"""The sampling loop: seeding, batching, guidance passes, schedules, the generator + tokenizer
pipeline, and one-line errors before any work."""

import math

import pytest
import torch

import adatok
from adatok.errors import AdatokError, ConfigError, InputError
from adatok.generators import generate_images, guidance_scale
from adatok.generators.sampling import remask_count


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return adatok.create_model("maskgit_tiny").eval()


class CountPasses:
    """Records the batch size of every backbone forward."""

    def __init__(self, model):
        self.sizes = []
        self.handle = model.backbone.register_forward_hook(lambda m, i, o: self.sizes.append(i[0].shape[0]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_same_seed_same_ids_other_seed_other_ids(gen):
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    a = gen.generate(labels, seed=7, temperature=4.0)
    b = gen.generate(labels, seed=7, temperature=4.0)
    c = gen.generate(labels, seed=8, temperature=4.0)
    assert torch.equal(a.ids, b.ids) and not torch.equal(a.ids, c.ids)
    assert a.ids.dtype == torch.int64 and a.ids.shape == (6, 8) and ((a.ids >= 0) & (a.ids < 64)).all()
    assert torch.equal(a.lengths, torch.full((6,), 8)) and torch.equal(a.labels, labels)


def test_batch_equals_per_sample_at_temperature_zero(gen):
    labels = torch.tensor([0, 3, 3, 9, -1])
    batch = gen.generate(labels, temperature=0.0, guidance=2.0, schedule="linear", steps=5).ids
    alone = torch.cat([gen.generate(labels[i:i + 1], temperature=0.0, guidance=2.0, schedule="linear", steps=5).ids
                       for i in range(5)])
    assert torch.equal(batch, alone)


def test_guidance_runs_cond_and_uncond_in_one_batch_and_skips_it_at_zero(gen):
    labels = torch.tensor([1, 2, 3])
    with CountPasses(gen) as c:
        gen.generate(labels, steps=4, guidance=2.0, schedule="constant")
    assert c.sizes == [6, 6, 6, 6]  # cond + uncond together, every step
    with CountPasses(gen) as c:
        gen.generate(labels, steps=4, guidance=2.0, schedule="linear")
    assert c.sizes == [3, 6, 6, 6]  # linear starts at w = 0: conditional pass only
    with CountPasses(gen) as c:
        gen.generate(labels, steps=4, guidance=0.0, schedule="constant")
    assert c.sizes == [3, 3, 3, 3]  # no guidance: the unconditional pass is never run


def test_guidance_schedules():
    assert [guidance_scale("constant", s, 8, 4.5) for s in (0, 7)] == [4.5, 4.5]
    assert [guidance_scale("linear", s, 8, 4.0) for s in range(4)] == [0.0, 0.5, 1.0, 1.5]
    pc = [guidance_scale("power-cosine", s, 64, 6.9, 3.0) for s in (0, 32, 63)]
    assert pc[0] == 1.0 and abs(pc[1] - (5.9 * (1 - math.cos(math.pi / 8)) / 2 + 1)) < 1e-5 and pc[2] < 6.9
    with pytest.raises(ConfigError, match="unknown guidance schedule 'cosine'"):
        guidance_scale("cosine", 0, 8, 1.0)


def test_remask_count_follows_arccos_per_sample():
    lengths, masked = torch.tensor([32, 32, 8]), torch.tensor([32, 3, 8])
    got = remask_count(1 / 8, lengths, masked)
    full = math.floor(32 * math.acos(1 / 8) / (math.pi / 2))
    assert got.tolist() == [full, 2, math.floor(8 * math.acos(1 / 8) / (math.pi / 2))]
    assert remask_count(7 / 8, torch.tensor([32]), torch.tensor([1])).tolist() == [1]


def test_unconditional_and_uvit(gen):
    out = gen.generate(num_samples=3, seed=0)
    assert torch.equal(out.labels, torch.full((3,), -1)) and out.ids.shape == (3, 8)
    uvit = adatok.create_model("maskgit_uvit_tiny").eval()
    assert uvit.generate([1, 2], seed=0, schedule="power-cosine").ids.shape == (2, 8)


def test_bad_input_fails_before_any_forward(gen):
    cases = [
        (dict(labels=[0, 10]), InputError, r"class ids must lie in \[0, 9\].*got 10"),
        (dict(labels=[-2]), InputError, "got -2"),
        (dict(labels=[0], steps=0), ConfigError, "steps must be an integer >= 1, got 0"),
        (dict(labels=[0], schedule="cosine"), ConfigError, "unknown guidance schedule 'cosine'"),
        (dict(labels=[0], temperature=-1.0), ConfigError, "temperature must be"),
        (dict(), InputError, "num_samples"),
    ]
    for kwargs, error, pattern in cases:
        with CountPasses(gen) as c, pytest.raises(error, match=pattern):
            gen.generate(**kwargs)
        assert c.sizes == [], kwargs
        assert "\n" not in str(error)


def test_pipeline_returns_ids_and_images(gen, tokenizer_dir):
    tok = adatok.load(tokenizer_dir)
    out = generate_images(gen, tok, classes=[1, 5], n=2, seed=0, batch_size=3)
    assert out.images.shape == (4, 3, 64, 64) and out.images.min() >= 0 and out.images.max() <= 1
    assert out.labels.tolist() == [1, 1, 5, 5]
    with torch.no_grad():
        torch.testing.assert_close(out.images, tok.decode_ids(out.ids), atol=1e-4, rtol=0)
    again = generate_images(gen, tok, classes=[1, 5], n=2, seed=0, batch_size=3)
    assert torch.equal(out.ids, again.ids)


def test_pipeline_rejects_mismatched_tokenizer(gen):
    fewer_tokens = adatok.create_model("titok_tiny", num_tokens=16)
    other_codebook = adatok.create_model("titok_tiny", codebook_size=128)
    kl = adatok.create_model("titok_vae_tiny")
    for tok, pattern in [(fewer_tokens, "makes 8 tokens per image but the tokenizer reads 16"),
                         (other_codebook, "predicts 64 codes but the tokenizer has a codebook of 128"),
                         (kl, "continuous")]:
        with CountPasses(gen) as c, pytest.raises(AdatokError, match=pattern):
            generate_images(gen, tok, classes=[1], n=1)
        assert c.sizes == []
    with pytest.raises(InputError, match="n .* must be an integer >= 1"):
        generate_images(gen, adatok.create_model("titok_tiny"), classes=[1], n=0)


def test_docs_sampling_snippet_runs():
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "generation.md").read_text()
    snippet = re.findall(r"```python\n(.*?)```", text, re.S)[1]
    scope = {}
    exec(compile(snippet, "docs/generation.md", "exec"), scope)
    assert scope["res"].images.shape == (8, 3, 64, 64) and scope["out"].ids.shape == (2, 8)


def test_length_aware_pipeline_decodes_with_a_variable_length_tokenizer():
    # an (untrained) length-aware generator over the token space of the tiny ALIT: 8..32 tokens
    torch.manual_seed(0)
    alit = adatok.create_model("alit_test_tiny").eval()
    gen = adatok.create_model("maskgit_length_tiny", num_tokens=32, lengths=(8, 16, 24, 32)).eval()
    out = generate_images(gen, alit, n=6, seed=0)
    assert out.images.shape == (6, 3, 64, 64) and set(out.lengths.tolist()) <= {8, 16, 24, 32}
    with torch.no_grad():
        torch.testing.assert_close(out.images, alit.decode_ids(out.ids, lengths=out.lengths), atol=1e-4, rtol=0)
    forced = generate_images(gen, alit, n=2, seed=0, lengths=24)
    assert forced.lengths.tolist() == [24, 24]
    with pytest.raises(InputError, match="lengths must be among"):
        gen.generate(num_samples=2, lengths=12)
    with pytest.raises(ConfigError, match="length-aware but this tokenizer is fixed-length"):
        generate_images(adatok.create_model("maskgit_length_tiny", num_tokens=8, lengths=(4, 8)),
                        adatok.create_model("titok_tiny"), n=1)
