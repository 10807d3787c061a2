"""mypy accepts the README's Python snippets as written (create_model / load are typed as the
tokenizer interface, adatok/model_types.py), and really reads adatok's types: a wrong use is
rejected in the same run."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]

CANARY = '''import torch
import adatok

tok = adatok.create_model("titok_tiny")
wrong: int = tok.encode(torch.rand(1, 3, 64, 64))
'''


def readme_programs() -> list[str]:
    """The README's Python blocks as programs: a block that starts with ``import`` starts a new
    one, the others continue the one before (as the README reads them)."""
    programs: list[str] = []
    for block in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        if block.startswith("import ") or not programs:
            programs.append(block)
        else:
            programs[-1] += block
    return programs


def test_readme_snippets_type_check(tmp_path):
    programs = readme_programs()
    assert len(programs) >= 2 and any("create_model" in p for p in programs)
    files = []
    for i, text in enumerate(programs):
        files.append(tmp_path / f"readme_{i}.py")
        files[-1].write_text(text)
    (tmp_path / "canary.py").write_text(CANARY)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent", "--no-error-summary",
         # a cache beside the sources: torch's stubs take ~40 s cold, ~3 s warm
         "--cache-dir", str(ROOT / ".mypy_cache"), *map(str, files), str(tmp_path / "canary.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={"MYPYPATH": str(ROOT / "src"), "PATH": ""},
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    readme_errors = [e for e in errors if "canary" not in e]
    assert not readme_errors, "\n".join(readme_errors)
    canary = [e for e in errors if "canary" in e]
    assert len(canary) == 1 and '"Tokens"' in canary[0], result.stdout + result.stderr


def test_reduction_info_before_a_forward_is_a_clear_error():
    """``R.info`` returns a ``ReductionInfo`` (not Optional, so ``R.info(model).tokens`` type-checks):
    before the first forward there is none, and it says so."""
    import pytest
    import timm

    import adatok.reduction as R
    from adatok.errors import InputError

    model = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1, num_classes=2)
    R.apply(model, "tome", r=1)
    with pytest.raises(InputError, match="call the model first"):
        R.info(model)
