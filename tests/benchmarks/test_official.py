"""--official-* options: a user's checkout is imported from its folder; wrong folders give one line.
The official repositories are not available to the tests: a stand-in checkout with the same layout
(tome/patch/timm.py) checks the import and the agreement check of reduction_throughput."""

import sys
import textwrap

import pytest
import torch

import official
import reduction_throughput as rt


@pytest.fixture(autouse=True)
def _forget_official_modules():
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("tome", "evit", "modeling")}
    yield
    for k in [k for k in sys.modules if k.split(".")[0] in ("tome", "evit", "modeling")]:
        del sys.modules[k]
    sys.modules.update(saved)


def fake_tome(tmp_path, r_seen="model.r"):
    """A folder laid out like facebookresearch/ToMe whose patch applies adatok's ToMe with ``r``."""
    pkg = tmp_path / "ToMe" / "tome" / "patch"
    pkg.mkdir(parents=True)
    (pkg.parent / "__init__.py").write_text("from . import patch\n")
    (pkg / "__init__.py").write_text("from .timm import apply_patch as timm\n")  # as the real one exports it
    (pkg / "timm.py").write_text(textwrap.dedent(f"""
        import adatok.reduction as R

        def apply_patch(model):
            def forward_features(x, **kw):
                if not R.is_patched(model):
                    R.apply(model, "tome", r={r_seen}, attention="eager")
                return model.forward_features(x)
            model.forward_features = forward_features
    """))
    return tmp_path / "ToMe"


@pytest.mark.parametrize("kind", sorted(official.REPOS))
def test_missing_folder_is_one_line(kind, tmp_path):
    with pytest.raises(official.OfficialCodeError) as e:
        official.import_official(kind, tmp_path / "nope")
    assert "no such folder" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(official.OfficialCodeError) as e:
        official.import_official(kind, tmp_path)  # exists, but not the repository
    assert "not found there" in str(e.value) and official.REPOS[kind][0] in str(e.value)
    with pytest.raises(official.OfficialCodeError):
        official.import_official(kind, None)


def test_broken_checkout_import_error_is_one_line(tmp_path):
    (tmp_path / "evit.py").write_text("import no_such_module_xyz\n")
    with pytest.raises(official.OfficialCodeError) as e:
        official.import_official("evit", tmp_path)
    assert "ModuleNotFoundError" in str(e.value) and "\n" not in str(e.value)


def test_script_exits_2_with_the_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        rt.parse_args(["--official-tome", str(tmp_path / "nope")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --official-tome") and len(err.splitlines()) == 1


def test_official_model_comes_from_the_checkout_and_is_checked(tmp_path):
    import timm  # a core dependency of adatok
    folder = fake_tome(tmp_path)
    mod = official.import_official("tome", folder)
    assert str(folder) in mod.__file__
    torch.manual_seed(0)
    base = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    rt.OFFICIAL_DIRS["tome"] = folder
    try:
        models = {"tome_r13": rt.build("deit_tiny_patch16_224", "tome_r13", base, torch.device("cpu")),
                  "tome_r13_official": rt.build("deit_tiny_patch16_224", "tome_r13_official", base, torch.device("cpu"))}
        x = torch.rand(2, 3, 224, 224)
        lines = rt.check_agreement({k: m for k, m in models.items()}, x)
        assert len(lines) == 1 and "tome_r13_official vs tome_r13" in lines[0]
        models["tome_r13"] = rt.build("deit_tiny_patch16_224", "tome_r8", base, torch.device("cpu"))
        with pytest.raises(SystemExit, match="logits differ"):
            rt.check_agreement(models, x)
    finally:
        rt.OFFICIAL_DIRS.clear()
