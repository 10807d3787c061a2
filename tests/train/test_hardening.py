"""Training under bad recipes and changed resumes (issue 17): every field validated when the recipe
is parsed, a resume that changes what is trained is refused naming the difference, a fresh run never
appends to an old log, loader-worker errors arrive as their one line."""

import pytest
import yaml

from adatok.cli.main import main
from adatok.errors import AdatokError, ConfigError
from adatok.train import load_run_config, run

from .conftest import tiny_run

FAST = {"train.steps": 2, "train.sample_every": 0, "options.perceptual": "none", "options.gan_weight": 0.0,
        "model": "titok_pixels_tiny"}


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=[4]", "train.batch_size: expected an integer, got [4]"),
    ("optim.betas=0.9", "optim.betas: expected a list of numbers"),
    ("optim.betas=[0.9, 1.5]", "optim.betas must be two numbers in [0, 1)"),
    ("train.ckpt_every=0", "train.ckpt_every must be >= 1, got 0"),
    ("train.log_every=0", "train.log_every must be >= 1"),
    ("train.sample_every=-1", "train.sample_every must be >= 0"),
    ("train.tensorboard=1", "train.tensorboard: expected true or false, got 1"),
    ("train.steps=2.5", "train.steps: expected an integer, got 2.5"),
    ("data.workers=-1", "data.workers must be >= 0"),
    ("data.image_size=abc", "expected a number"),
    ("data.scale=[0.5, 2]", "data.scale must be two area fractions"),
    ("data.crop=middle", "data.crop must be random|center|random_resized"),
    ("data.flip=yes", "data.flip: expected true or false"),
    ("optim.eps=0", "optim.eps must be > 0"),
    ("disc_optim.lr=-1", "disc_optim.lr must be >= 0"),
    ("model=[1]", "model: expected a string"),
    ("options=3", "options: expected a mapping"),
    ("data=photos/", "data: expected a mapping of data.* fields"),
])
def test_recipe_values_are_validated_when_parsed(override, message):
    with pytest.raises(ConfigError) as e:
        load_run_config({"task": "titok_single"}, [override])
    assert message in str(e.value) and "\n" not in str(e.value) and "built-in method" not in str(e.value)


def test_valid_recipes_still_parse():
    cfg = load_run_config({"task": "titok_single"}, ["train.seed=1e3", "optim.lr=2e-4", "data.heldout=",
                                                     "optim.betas=[0.9, 0.95]"])
    assert cfg.train.seed == 1000 and isinstance(cfg.train.seed, int) and cfg.optim.lr == 2e-4
    assert cfg.data.heldout == "" and cfg.optim.betas == (0.9, 0.95)
    assert "did you mean data.train=photos/" in _error({"task": "titok_single"}, ["data=photos/"])


def _error(raw, overrides) -> str:
    with pytest.raises(ConfigError) as e:
        load_run_config(raw, overrides)
    return str(e.value)


@pytest.fixture()
def finished(photos, tmp_path):
    cfg = tiny_run("titok_single", tmp_path / "r", photos, **FAST)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    run(recipe)
    return recipe, tmp_path / "r"


def test_resume_with_changed_recipe_is_refused_naming_the_difference(finished):
    recipe, out = finished
    before = (out / "run.yaml").read_text()
    with pytest.raises(AdatokError) as e:
        run(recipe, ["train.batch_size=2", "optim.lr=0.01", "train.steps=3"], resume=True)
    msg = str(e.value)
    assert "train.batch_size=4 -> 2" in msg and "optim.lr=0.001 -> 0.01" in msg and "--allow-changes" in msg
    assert "train.steps" not in msg and "\n" not in msg  # more steps is not a change of what is trained
    assert (out / "run.yaml").read_text() == before  # nothing rewritten
    with pytest.raises(AdatokError, match=r"model='titok_pixels_tiny' -> 'titok_vae_tiny'"):
        run(recipe, ["model=titok_vae_tiny"], resume=True)
    # allowed on request: the run goes on with the new settings and records them
    run(recipe, ["train.batch_size=2", "train.steps=3"], resume=True, allow_changes=True)
    assert load_run_config(out / "run.yaml").train.batch_size == 2


def test_resume_with_another_model_and_allow_changes_is_one_line(finished):
    recipe, _ = finished
    with pytest.raises(AdatokError) as e:
        run(recipe, ["model=titok_vae_tiny", "train.steps=3"], resume=True, allow_changes=True)
    assert "do not fit this run's model" in str(e.value) and "\n" not in str(e.value)
    assert len(str(e.value)) < 600  # not a multi-kilobyte load_state_dict dump


def test_resume_that_only_extends_the_run_works_with_overrides_after_flags(finished, capsys):
    recipe, out = finished
    assert main(["train", str(recipe), "--resume", "train.steps=4"]) == 0
    assert load_run_config(out / "run.yaml").train.steps == 4
    steps = [int(float(l.split(",")[0])) for l in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4]


def test_fresh_run_never_appends_to_an_old_log(photos, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "log.csv").write_text("step,loss\n1,0.5\n2,0.4\n")  # an earlier run killed before its checkpoint
    with pytest.raises(AdatokError, match="log.csv.*earlier run.*another out=") as e:
        run(tiny_run("titok_single", out, photos, **FAST))
    assert "\n" not in str(e.value)
    assert (out / "log.csv").read_text() == "step,loss\n1,0.5\n2,0.4\n"
    (out / "log.csv").write_text("")  # an empty log is no earlier run
    run(tiny_run("titok_single", out, photos, **FAST))
    assert [l.split(",")[0] for l in (out / "log.csv").read_text().splitlines()[1:]] == ["1", "2"]


def test_corrupt_only_data_with_loader_workers_is_one_line(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_text("not an image")
    (bad / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    cfg = tiny_run("titok_single", tmp_path / "r", bad, **{**FAST, "data.workers": 1, "data.num_samples": 0,
                                                          "train.batch_size": 2})
    with pytest.raises(AdatokError) as e:
        run(cfg)
    msg = str(e.value)
    assert "none of its 2 images could be read" in msg
    assert "\n" not in msg and "DataLoader worker" not in msg and "Traceback" not in msg


def test_worker_errors_that_are_not_ours_pass_through():
    from adatok.train.data import one_line_worker_errors

    def batches(error):
        yield 1
        raise error

    assert list(one_line_worker_errors(iter([1, 2]))) == [1, 2]
    it = one_line_worker_errors(batches(RuntimeError("Caught KeyError in DataLoader worker process 0.\n"
                                                     "Original Traceback (most recent call last):\nKeyError: 3")))
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="Caught KeyError"):
        next(it)
