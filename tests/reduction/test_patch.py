"""Patching timm ViTs: equivalence with reduction off, invariants with it on, remove(), training."""

import copy

import pytest
import timm
import torch

import adatok.reduction as R
from adatok.errors import ConfigError

OFF = {"tome": {"r": 0}, "evit": {"keep_rate": 1.0}, "imagepiece": {"keep_rate": 1.0, "merge_ratio": 0.0}}
ON = [
    ("tome", {"r": 2}),
    ("tome", {"r": 3, "inflection": -1.0, "prop_attn": False}),
    ("evit", {}),
    ("evit", {"fuse_token": False, "keep_rate": 0.5, "blocks": [1, 5]}),
    ("imagepiece", {}),
    ("imagepiece", {"keep_rate": 0.7, "nonsemantic_ratio": 0.5, "merge_ratio": 0.15}),
    ("imagepiece", {"rounds": 2, "rescore": "next_block", "fuse_pruned": True}),
    ("imagepiece", {"lcb": True, "keep_rate": 0.7}),
]


def deit(**kw):
    torch.manual_seed(0)
    return timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=96, **kw).eval()


def deit3():
    torch.manual_seed(0)
    model = timm.create_model("deit3_small_patch16_224", pretrained=False, img_size=64, depth=4).eval()
    for blk in model.blocks:  # LayerScale at 1e-5 would hide a dropped ls1/ls2: make it matter
        blk.ls1.gamma.data.uniform_(0.5, 1.5)
        blk.ls2.gamma.data.uniform_(0.5, 1.5)
    return model


def qk_norm_vit():
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, img_size=64, depth=4, qk_norm=True).eval()
    for blk in model.blocks:
        blk.attn.k_norm.weight.data.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def model():
    return deit()


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 96, 96, generator=torch.Generator().manual_seed(1))


def forward(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("build", [deit, deit3, qk_norm_vit], ids=["deit", "deit3_layerscale", "qk_norm"])
def test_reduction_off_equals_the_unpatched_model(build):
    model = build()
    x = torch.rand(2, 3, *model.patch_embed.img_size, generator=torch.Generator().manual_seed(0))
    ref = forward(model, x)
    for method, settings in OFF.items():
        for attention in ("sdpa", "eager"):
            R.apply(model, method, attention=attention, **settings)
            out = forward(model, x)
            assert R.info(model).tokens == [model.patch_embed.num_patches + 1] * len(model.blocks)
            R.remove(model)
            assert (out - ref).abs().max() < 1e-5, (method, attention)
    assert torch.equal(forward(model, x), ref)  # remove() restored the model exactly


@pytest.mark.parametrize("build", [deit3, qk_norm_vit], ids=["deit3_layerscale", "qk_norm"])
def test_reduction_on_other_vits_keeps_the_invariants(build):
    model = build()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    R.apply(model, "imagepiece", blocks=[1, 2], keep_rate=0.7, merge_ratio=0.2, trace_source=True)
    out = forward(model, x)
    info = R.info(model)
    assert out.shape == (2, 1000) and torch.isfinite(out).all()
    assert info.tokens == R.token_counts(model) and info.tokens[-1] < 17
    assert (info.size.sum(1) + info.dropped).tolist() == [17.0, 17.0]
    R.remove(model)


@pytest.mark.parametrize("method, settings", ON, ids=[f"{m}-{i}" for i, (m, _) in enumerate(ON)])
def test_reduction_invariants(model, images, method, settings):
    R.apply(model, method, trace_source=True, **settings)
    try:
        out = forward(model, images)
        info = R.info(model)
        n0 = model.patch_embed.num_patches + 1
        # token sizes (+ pruned patches) always account for every input token
        assert torch.equal(info.size.sum(1) + info.dropped, torch.full((3,), float(n0)))
        assert info.tokens == R.token_counts(model) and info.tokens[-1] < n0
        # [CLS] is never merged or pruned: token 0 is exactly [CLS], and no other token contains it
        assert torch.equal(info.source[:, 0], torch.eye(n0)[0].expand(3, n0))
        assert info.source[:, 1:, 0].sum() == 0
        # every input patch is in at most one token; sizes count the patches a token holds
        assert info.source.sum(1).max() <= 1
        assert torch.equal(info.source.sum(-1), info.size)
        # deterministic, and a batch gives what each image gives alone
        assert torch.equal(forward(model, images), out)
        for i in range(3):
            single = forward(model, images[i:i + 1])
            assert (single - out[i:i + 1]).abs().max() < 1e-4
            assert R.info(model).tokens == info.tokens
    finally:
        R.remove(model)


def test_eager_and_sdpa_paths_agree(model, images):
    for method, settings in ON[::2]:
        outs = []
        for attention in ("sdpa", "eager"):
            R.apply(model, method, attention=attention, **settings)
            outs.append((forward(model, images), R.info(model).tokens))
            R.remove(model)
        assert outs[0][1] == outs[1][1]
        assert (outs[0][0] - outs[1][0]).abs().max() < 1e-4


def test_trace_records_each_reducing_block(model, images):
    R.apply(model, "imagepiece", trace=True)
    forward(model, images)
    blocks = R.info(model).blocks
    assert [b.block for b in blocks] == [3, 6, 9]
    assert [b.tokens_out for b in blocks] == [R.info(model).tokens[i] for i in (3, 6, 9)]
    b = blocks[0]
    assert b.source.shape == (3, b.tokens_out, 37) and b.nonsemantic.shape == (3, 37)
    # the pool is p = 0.3 of the 36 patches (10 tokens, each a single patch at the first block)
    assert b.nonsemantic.sum(1).tolist() == [10, 10, 10] and not b.nonsemantic[:, 0].any()
    R.remove(model)


def test_lcb_stem_replaces_patchify_and_remove_restores_it(model, images):
    ref = forward(model, images)
    proj, keys = model.patch_embed.proj, set(model.state_dict())
    R.apply(model, "imagepiece", lcb=True)
    stem = model.patch_embed.proj
    convs = [m for m in stem.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 4 + [(1, 1)]
    assert [c.stride for c in convs] == [(2, 2)] * 4 + [(1, 1)]
    assert [c.out_channels for c in convs] == [12, 24, 48, 96, 192]  # D/16, D/8, D/4, D/2, then D (DeiT-Ti)
    assert stem(images).shape == (3, 192, 6, 6)  # the 6 x 6 grid (and the position embedding) stay
    assert forward(model, images).shape == (3, 1000)
    assert any(k.startswith("patch_embed.proj.convs") for k in model.state_dict())
    R.remove(model)
    assert model.patch_embed.proj is proj and set(model.state_dict()) == keys
    assert torch.equal(forward(model, images), ref)


def test_lcb_stem_for_small_patches():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4, depth=4)
    R.apply(model, "imagepiece", lcb=True, blocks=[1, 2])
    strides = [m.stride for m in model.patch_embed.proj.modules() if isinstance(m, torch.nn.Conv2d)]
    assert strides == [(2, 2), (2, 2), (1, 1), (1, 1), (1, 1)]
    assert forward(model.eval(), torch.rand(2, 3, 32, 32)).shape == (2, 1000)
    assert R.info(model).tokens_in == 65


def test_training_backward_keep_rate_override_and_copies():
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=64, depth=6, num_classes=5)
    R.apply(model, "imagepiece", lcb=True, keep_rate=0.5, merge_ratio=0.15)
    x = torch.rand(4, 3, 64, 64)
    R.set_keep_rate(model, 1.0)  # warm-up start: no pruning yet, merging still on
    model(x)
    warm = R.info(model).tokens
    assert warm[:2] == [17, 17 - round(0.15 * 16)]  # blocks (1, 3, 4) for depth 6
    R.set_keep_rate(model, None)
    loss = model(x).logsumexp(-1).mean()
    loss.backward()
    assert R.info(model).tokens[-1] < warm[-1]
    assert all(p.grad is not None for p in model.patch_embed.proj.parameters())
    assert model.blocks[5].attn.qkv.weight.grad.abs().sum() > 0
    ema = copy.deepcopy(model).eval()  # the training loop's EMA copy keeps working on its own
    R.set_keep_rate(ema, 1.0)
    with torch.no_grad():
        ema(x)
    assert R.info(ema).tokens == warm and R.info(model).tokens != warm


def test_bf16_autocast_runs(model, images):
    R.apply(model, "imagepiece")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images)
    assert torch.isfinite(out.float()).all() and R.info(model).tokens == R.token_counts(model)
    R.remove(model)


def test_reconfigure_keeps_the_stem():
    model = deit()
    R.apply(model, "imagepiece", lcb=True)
    stem = model.patch_embed.proj
    R.reconfigure(model, keep_rate=0.5)
    assert model.patch_embed.proj is stem and R.settings_of(model)["keep_rate"] == 0.5
    assert R.settings_of(model)["lcb"] is True
    with pytest.raises(ConfigError, match="LCB"):
        R.reconfigure(model, "tome", r=2)


def test_lcb_stem_inference_path_equals_the_training_path():
    from adatok.reduction.lcb_stem import LocalCoherenceStem

    torch.manual_seed(0)
    stem = LocalCoherenceStem(3, 64, 16)
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        stem.train()(x)  # non-trivial running statistics
        stem.eval()
        folded = stem(x)  # BatchNorm folded into the convs, channels_last
        reference = stem.proj(stem.convs(x))  # module by module
    assert folded.shape == (4, 64, 4, 4) and (folded - reference).abs().max() < 1e-5
