import os
import random
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"
SPACE_FILES = sorted(p for p in SPACES.glob("*.yaml") if p.stem != "deit_tiny")

if os.environ.get("PYTEST_XDIST_WORKER"):  # one pytest worker per core: one thread each, its subprocesses too
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _image_cache(tmp_path_factory):
    """One decoded-image cache for the session (and its subprocesses), never the user's."""
    os.environ["PSVIT_NAS_CACHE_DIR"] = str(tmp_path_factory.mktemp("image-cache"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    random.seed(0)


@pytest.fixture
def tiny_imagenet_dir() -> Path:
    """The real-image test set (../shared/data/tiny-imagenet-10), from PSVIT_NAS_TEST_DATA."""
    path = os.environ.get("PSVIT_NAS_TEST_DATA")
    if not path or not Path(path).is_dir():
        pytest.skip("PSVIT_NAS_TEST_DATA is not set to the tiny-imagenet-10 folder")
    return Path(path)


@pytest.fixture(scope="session")
def supernet(tmp_path_factory) -> str:
    """A digits supernet (3 epochs, 200 training images held out for the search), trained once per session."""
    from psvit_nas.cli import main

    out = tmp_path_factory.mktemp("sn")
    assert main(["train-supernet", "--config", str(SPACES / "digits.yaml"), "--out", str(out), "--epochs", "3",
                 "--search-holdout", "200"]) == 0
    return str(out / "last.pt")


@pytest.fixture(scope="session")
def fewshot(supernet, tmp_path_factory) -> str:
    """The digits supernet split into two parts by how many cells are `identity`, one epoch each."""
    from psvit_nas.cli import main

    out = tmp_path_factory.mktemp("fewshot") / "parts"
    assert main(["few-shot", "--supernet", supernet, "--split", "count:identity:2", "--epochs", "1", "--out",
                 str(out), "--workers", "0"]) == 0
    return str(out)


@pytest.fixture(scope="session")
def shared_ray():
    """One local Ray for the tests that run Ray in this process: a command finds it running and leaves it up,
    which saves a start and a shutdown (about 5 s) per command. Commands started as subprocesses start their own."""
    ray = pytest.importorskip("ray")
    from psvit_nas.cluster import start_ray

    started = start_ray()
    yield ray
    if started:
        ray.shutdown()
