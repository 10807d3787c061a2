import shutil
from pathlib import Path

import pytest
import torch

import adatok

SAMPLES = Path(adatok.__file__).parent / "data" / "samples"


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """The 4 bundled photos."""
    folder = tmp_path_factory.mktemp("gen_photos")
    for p in sorted(SAMPLES.glob("*.jpg")):
        shutil.copy(p, folder / p.name)
    return folder


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A saved (random) titok_tiny: 8 tokens over 64 codes, 64x64 images."""
    torch.manual_seed(0)
    return adatok.save(adatok.create_model("titok_tiny"), tmp_path_factory.mktemp("tok") / "titok_tiny")


@pytest.fixture(scope="session")
def generator_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return adatok.save(adatok.create_model("maskgit_tiny"), tmp_path_factory.mktemp("gen") / "maskgit_tiny")


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny generators are made of small ops: one intra-op thread is as fast as two on an idle
    machine and far faster on a busy one (a descheduled OpenMP peer stalls every op)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
