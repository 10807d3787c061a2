"""Traced paths: ``torch.export``, ONNX (checked with onnxruntime) and ``torch.compile`` without
graph breaks, for TiTok encode/decode/decode_ids and a token-reduced timm ViT. The eager input
checks still run outside tracing."""

import pytest
import timm
import torch

import adatok
import adatok.reduction as R
from adatok.errors import InputError


class Encode(torch.nn.Module):
    def __init__(self, tok):
        super().__init__()
        self.tok = tok

    def forward(self, images):
        tokens = self.tok.encode(images)
        return tokens.ids, tokens.codes


class DecodeIds(torch.nn.Module):
    def __init__(self, tok):
        super().__init__()
        self.tok = tok

    def forward(self, ids):
        return self.tok.decode_ids(ids)


@pytest.fixture(scope="module")
def titok():
    torch.manual_seed(0)
    return adatok.create_model("titok_tiny").eval()


@pytest.fixture(scope="module")
def reduced_vit():
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=64, depth=3, num_classes=10).eval()
    R.apply(vit, "tome", r=2)
    return vit


def _inputs(titok):
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ids = torch.randint(0, titok.config.codebook_size, (2, titok.num_tokens), generator=torch.Generator().manual_seed(2))
    return images, ids


def test_torch_export_titok_encode_and_decode_ids(titok):
    images, ids = _inputs(titok)
    with torch.no_grad():
        batch = torch.export.Dim("batch", min=1, max=1024)
        enc = torch.export.export(Encode(titok), (images,), dynamic_shapes=({0: batch},)).module()
        dec = torch.export.export(DecodeIds(titok), (ids,), dynamic_shapes=({0: batch},)).module()
        got_ids, got_codes = enc(images)
        want = titok.encode(images)
        assert torch.equal(got_ids, want.ids)
        torch.testing.assert_close(got_codes, want.codes, rtol=0, atol=1e-6)
        torch.testing.assert_close(dec(ids), titok.decode_ids(ids), rtol=0, atol=1e-6)
        other = torch.rand(3, 3, 64, 64)  # other values and another batch size, same graph
        assert torch.equal(enc(other)[0], titok.encode(other).ids)


def _onnx_run(module, inp):
    import onnxruntime as ort

    program = torch.onnx.export(module, (inp,), dynamo=True)
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(o) for o in session.run(None, {session.get_inputs()[0].name: inp.numpy()})]


def test_onnx_titok_encode_and_decode_ids_match_onnxruntime(titok):
    images, ids = _inputs(titok)
    got_ids, got_codes = _onnx_run(Encode(titok), images)
    (got_images,) = _onnx_run(DecodeIds(titok), ids)
    with torch.no_grad():
        want = titok.encode(images)
        assert torch.equal(got_ids, want.ids)
        torch.testing.assert_close(got_codes, want.codes, rtol=0, atol=1e-5)
        torch.testing.assert_close(got_images, titok.decode_ids(ids), rtol=0, atol=1e-4)


def test_reduced_vit_exports_to_torch_export_and_onnx(reduced_vit):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = reduced_vit(x)
        exported = torch.export.export(reduced_vit, (x,)).module()
        torch.testing.assert_close(exported(x), want, rtol=0, atol=1e-5)
    assert R.info(reduced_vit).tokens[-1] < 17  # the patched forward (ToMe merged tokens) is what ran
    (got,) = _onnx_run(reduced_vit, x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def _graph_breaks(fn, *args):
    torch._dynamo.reset()
    try:
        return torch._dynamo.explain(fn)(*args).graph_break_count
    finally:
        torch._dynamo.reset()


def test_titok_compiles_without_graph_breaks(titok):
    images, ids = _inputs(titok)
    with torch.no_grad():
        tokens = titok.encode(images)
        assert _graph_breaks(lambda x: titok.encode(x).ids, images) == 0
        assert _graph_breaks(lambda c: titok.decode(c), tokens.codes) == 0
        assert _graph_breaks(lambda i: titok.decode_ids(i), ids) == 0


def test_alit_fixed_length_rollout_compiles_without_graph_breaks():
    torch.manual_seed(0)
    alit = adatok.create_model("alit_test_tiny").eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert _graph_breaks(lambda x: [it.codes for it in alit.rollout(x, pixels=()).iterations], images) == 0


def test_eager_checks_still_run(titok):
    images, ids = _inputs(titok)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        titok.encode(images * 255)
    with pytest.raises(InputError, match="NaN"):
        titok.encode(torch.full_like(images, float("nan")))
    with pytest.raises(InputError, match="must lie in"):
        titok.decode_ids(ids + titok.config.codebook_size)


def test_readme_export_snippet_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    blocks = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / "README.md").read_text(), re.S)
    snippet = next(b for b in blocks if "torch.export.export(Encode" in b)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # the snippet continues the first one
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert isinstance(namespace["program"], torch.export.ExportedProgram)
