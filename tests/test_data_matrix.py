"""The data matrix (issue 22): train-supernet then evolve on each data kind x --cache x --workers, at a tiny
size; each run ends with exit 0, or one line and exit 2, never a traceback. The test covers every (kind, cache)
pair and, pairwise, both worker counts for each kind and each cache mode; `scripts/data_matrix.py` runs the full
product (docs/reliability.md has its table)."""
import importlib.util
import os
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SPACES
from psvit_nas.cli import main

_spec = importlib.util.spec_from_file_location("data_matrix", ROOT / "scripts" / "data_matrix.py")
matrix = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(matrix)

KINDS = ("digits", "cifar10 batches", "image folder", "tiny-imagenet layout")
CACHES = ("auto", "on", "off")
CELLS = [(kind, cache, str(2 * ((k + c) % 2))) for k, kind in enumerate(KINDS) for c, cache in enumerate(CACHES)]


@pytest.fixture(scope="module")
def kinds(tmp_path_factory) -> dict[str, tuple[str, str, str]]:
    """(data, data dir, space) per data kind, built in the formats the loaders read; RGB kinds on a 16-pixel
    3-channel copy of the digits space, so that each run takes a second or two."""
    work = tmp_path_factory.mktemp("matrix")
    rgb = yaml.safe_load((SPACES / "digits.yaml").read_text()) | {"name": "rgb16", "image_size": 16, "in_chans": 3}
    (work / "rgb16.yaml").write_text(yaml.safe_dump(rgb))
    space = str(work / "rgb16.yaml")
    out = {"digits": ("digits", "data", str(SPACES / "digits.yaml")),
           "cifar10 batches": (*matrix.cifar(work / "cifar"), space),
           "image folder": (*matrix.image_folder(work / "folder"), space)}
    source = os.environ.get("PSVIT_NAS_TEST_DATA")
    if source and Path(source).is_dir():
        out["tiny-imagenet layout"] = (*matrix.tiny_imagenet(work / "tiny", Path(source)), space)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind, cache, workers", CELLS)
def test_every_data_kind_cache_mode_and_worker_count_trains_and_searches(kind, cache, workers, kinds, tmp_path,
                                                                          capsys):
    if kind not in kinds:
        pytest.skip("PSVIT_NAS_TEST_DATA is not set to the tiny-imagenet-10 folder")
    data, data_dir, space = kinds[kind]
    common = ["--cache", cache, "--workers", workers, "--cache-dir", str(tmp_path / "cache")]
    batch = "128" if kind == "digits" else "16"  # digits has 1,797 images, the others about a hundred
    assert main(["train-supernet", "--config", space, "--data", data, "--data-dir", data_dir, "--epochs", "1",
                 "--batch-size", batch, "--search-holdout", "16", "--val-archs", "1", "--out", str(tmp_path / "sn"),
                 *common]) == 0
    code = main(["evolve", "--supernet", str(tmp_path / "sn" / "last.pt"), "--flops", "1G", "--population", "4",
                 "--generations", "1", "--topk", "2", "--out", str(tmp_path / "search"), *common])
    err = capsys.readouterr().err.strip()
    assert code == 0, err
    assert (tmp_path / "search" / "best.yaml").is_file()
