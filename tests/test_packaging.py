"""What a ``pip install`` gives: the recipes ship in the wheel, ``--version``, ``train --list``,
help text on every flag, and a missing optional dependency named by its extra in one line."""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import adatok
from adatok.cli.main import build_parser, main
from adatok.recipes import list_recipes, resolve_recipe

ROOT = Path(__file__).parents[1]
SAMPLE = Path(adatok.__file__).parent / "data" / "samples" / "chelsea.jpg"


def test_wheel_installs_recipes_version_and_cli(tmp_path):
    """Build the wheel from a copy of the sources, install it (no deps: torch & co. come from this
    environment) into a fresh target folder, and run it from a directory without a checkout."""
    src = tmp_path / "src_copy"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels, target, cwd = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    cwd.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                   check=True, cwd=tmp_path, timeout=120)
    (wheel,) = wheels.glob("adatok-*.whl")
    subprocess.run(pip + ["install", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
                   check=True, timeout=120)
    # The installed copy first on the path, this environment's torch/timm after it; not the sources.
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}

    def run(*args):
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd,
                              timeout=120)

    out = run("-c", "import adatok; print(adatok.__file__)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(target))
    version = run("-m", "adatok", "--version")
    assert version.stdout.strip() == f"adatok {adatok.__version__}", version.stderr
    listed = run("-m", "adatok", "train", "--list")
    assert listed.returncode == 0, listed.stderr
    names = listed.stdout.split()
    assert {"titok_single", "alit_stage1", "classify_deit_reduction", "defaults/titok"} <= set(names)
    resolved = run("-c", "from adatok.train.config import load_run_config as l; c = l('titok_single'); "
                   "d = l('configs/defaults/titok.yaml'); print(c.task, d.task)")
    assert resolved.stdout.split() == ["titok_single", "titok_single"], resolved.stderr
    # the console script the wheel declares
    script = target / "bin" / "adatok"
    assert script.exists()
    scripted = subprocess.run([sys.executable, str(script), "--version"], capture_output=True, text=True,
                              env=env, cwd=cwd, timeout=60)
    assert scripted.stdout.strip() == f"adatok {adatok.__version__}", scripted.stderr


def test_recipe_names_and_paths_resolve(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: the README's paths still name the shipped files
    assert resolve_recipe("titok_single") == resolve_recipe("configs/titok_single.yaml")
    assert resolve_recipe("defaults/alit.yaml").name == "alit.yaml"
    own = tmp_path / "titok_single.yaml"  # an existing file wins over the shipped name
    own.write_text("task: titok_single\n")
    assert resolve_recipe(own) == own
    # every recipe in the source tree's configs/ is shipped under its name
    configs = (ROOT / "configs").resolve()
    shipped = {p.relative_to(configs).with_suffix("").as_posix() for p in configs.rglob("*.yaml")}
    assert shipped and shipped == set(list_recipes())


def test_unknown_recipe_is_one_line_with_a_suggestion(capsys):
    assert main(["train", "titok_singel"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "did you mean titok_single" in err and "adatok train --list" in err


def test_train_list_and_version(capsys):
    assert main(["train", "--list"]) == 0
    assert "titok_s128_stage1" in capsys.readouterr().out.split()
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"adatok {adatok.__version__}"


def test_every_flag_has_help_and_help_is_current():
    parser = build_parser()
    assert "to come" not in parser.description and "ALIT" in parser.description
    missing = []

    def walk(p, path):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, child in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name} (sub-command)")
                    walk(child, f"{path} {name}")
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(parser, "adatok")
    assert not missing, missing


@pytest.mark.parametrize("module, argv, extra", [
    ("torchmetrics", ["eval", str(SAMPLE), "--model", "titok_default"], "eval"),
    ("yaml", ["train", "titok_single"], "train"),
])
def test_missing_extra_names_it_in_one_line(monkeypatch, capsys, module, argv, extra):
    monkeypatch.setitem(sys.modules, module, None)  # what `import module` sees when it is not installed
    for name in [n for n in sys.modules if n.startswith(module + ".")]:  # submodules an earlier test imported
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delenv("ADATOK_DEBUG", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "internal error" not in err
    assert f"pip install 'adatok[{extra}]'" in err
