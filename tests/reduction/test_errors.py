"""Bad input: unsupported models, out-of-range settings and double patching give one-line errors."""

import pytest
import timm
import torch

import adatok.reduction as R
from adatok.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=64, depth=12).eval()


def one_line_error(exc_info, *words):
    text = str(exc_info.value)
    assert "\n" not in text, text
    for w in words:
        assert w in text, (w, text)


@pytest.mark.parametrize("build, words", [
    (lambda: timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, depths=(1, 1, 1, 1),
                               embed_dim=32, num_heads=(1, 1, 1, 1)), ["SwinTransformer", "not a timm VisionTransformer"]),
    (lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1, class_token=False,
                               global_pool="avg"), ["no [CLS] token"]),
    (lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1, global_pool="avg"),
     ["global_pool='avg'"]),
    (lambda: timm.create_model("vit_tiny_r_s16_p8_224", pretrained=False, img_size=64, depth=1),
     ["HybridEmbed", "conv/hybrid stem"]),
    (lambda: timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=32, depth=1),
     ["2 prefix tokens"]),
    (lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1, reg_tokens=4),
     ["5 prefix tokens"]),
    (lambda: torch.nn.Linear(3, 3), ["Linear", "not a timm VisionTransformer"]),
], ids=["swin", "no_cls", "avg_pool", "hybrid_conv_stem", "distilled", "registers", "not_a_vit"])
def test_unsupported_models_are_refused(build, words):
    with pytest.raises(ConfigError) as e:
        R.apply(build(), "tome", r=1)
    one_line_error(e, *words)


def test_other_block_types_are_refused():
    from timm.models.vision_transformer import ResPostBlock

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1, block_fn=ResPostBlock)
    with pytest.raises(ConfigError) as e:
        R.apply(model, "evit")
    one_line_error(e, "ResPostBlock", "blocks[0]")


@pytest.mark.parametrize("method, settings, words", [
    ("imagepiece", {"nonsemantic_ratio": 0.0}, ["nonsemantic_ratio=0.0", "(0.0, 1.0]"]),
    ("imagepiece", {"nonsemantic_ratio": 1.5}, ["nonsemantic_ratio=1.5"]),
    ("imagepiece", {"merge_ratio": 0.6}, ["merge_ratio=0.6", "[0.0, 0.5]"]),
    ("imagepiece", {"keep_rate": 0.0}, ["keep_rate=0.0"]),
    ("imagepiece", {"keep_rate": 1.2}, ["keep_rate=1.2"]),
    ("imagepiece", {"rounds": 0}, ["rounds=0"]),
    ("imagepiece", {"rescore": "mean"}, ["rescore='mean'", "next_block"]),
    ("imagepiece", {"blocks": [3, 12]}, ["[12]", "depth 12"]),
    ("imagepiece", {"blocks": [11], "rescore": "next_block"}, ["next_block", "depth 12"]),
    ("imagepiece", {"lcb_widths": [1, 2]}, ["lcb_widths"]),
    ("evit", {"keep_rate": -0.1}, ["keep_rate=-0.1"]),
    ("evit", {"blocks": [2, 2]}, ["listed twice"]),
    ("evit", {"blocks": [20]}, ["[20]", "beyond this model's depth 12"]),
    ("tome", {"r": -1}, ["r=-1"]),
    ("tome", {"r": 4}, ["larger than possible", "block 3", "r <= 1"]),
    ("tome", {"r": [1] * 13}, ["13 values", "12 blocks"]),
    ("tome", {"inflection": 2.0}, ["inflection=2.0"]),
    ("tome", {"keep_rate": 0.5}, ["unknown field", "keep_rate"]),
    ("pruning", {}, ["unknown reduction method 'pruning'"]),
])
def test_bad_settings_are_refused(vit, method, settings, words):
    with pytest.raises(ConfigError) as e:
        R.apply(vit, method, **settings)
    one_line_error(e, *words)
    assert not R.is_patched(vit)


def test_double_patching_and_unpatched_calls_are_refused(vit):
    R.apply(vit, "tome", r=1)
    with pytest.raises(ConfigError) as e:
        R.apply(vit, "evit")
    one_line_error(e, "already patched with 'tome'", "remove")
    R.remove(vit)
    with pytest.raises(InputError) as e:
        R.remove(vit)
    one_line_error(e, "not patched")
    with pytest.raises(ConfigError):
        R.set_keep_rate(R.apply(vit, "evit"), 1.5)
    R.remove(vit)


def test_lcb_needs_a_power_of_two_patch():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=36, patch_size=12, depth=1)
    with pytest.raises(ConfigError) as e:
        R.apply(model, "imagepiece", lcb=True, blocks=[0])
    one_line_error(e, "power-of-two patch size", "got 12")
    assert not R.is_patched(model)
