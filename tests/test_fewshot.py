"""Few-shot supernets: the split, the part-restricted sampler, sub-supernets warm-started from the supernet
(which never changes), and each architecture scored by the sub-supernet its split assigns."""
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from conftest import SPACES
from psvit_nas import SearchSpace
from psvit_nas.cli import main
from psvit_nas.errors import ConfigError
from psvit_nas.rankers import FewShotRanker
from psvit_nas.samplers import Split, make_sampler
from psvit_nas.rankers import Evaluator, FitnessSet
from psvit_nas.train import load_checkpoint, load_supernet

DIGITS = SearchSpace.from_yaml(SPACES / "digits.yaml")
TINY = SearchSpace.from_yaml(SPACES / "tiny_imagenet.yaml")


def test_a_count_split_has_parts_of_about_equal_mass_and_a_cell_split_one_part_per_choice():
    rng = random.Random(3)
    archs = [TINY.sample(rng) for _ in range(2000)]
    split = Split.parse("count:identity:2", TINY)
    counts = Counter(split.part(TINY, a) for a in archs)
    assert split.parts(TINY) == 2 and set(counts) == {0, 1} and min(counts.values()) > 800
    for a in archs[:50]:
        identity = sum(cells.count("identity") for cells in a.stages)
        assert split.part(TINY, a) == (identity >= split.edges[0])
    cell = Split.parse("cell:2.3", TINY)
    assert cell.parts(TINY) == len(TINY.stages[1].choices)
    assert all(cell.part(TINY, a) == TINY.stages[1].choices.index(a.stages[1][2]) for a in archs[:50])
    for bad in ("cell:4.1", "cell:1.7", "count:teleport:2", "count:identity:1", "layers", "cell:x"):
        with pytest.raises(ConfigError, match="--split"):
            Split.parse(bad, TINY)


def test_the_part_sampler_trains_only_its_parts_paths():
    split = Split.parse("count:share:3", TINY)
    for k in range(3):
        sampler = make_sampler("uniform", TINY, 0, part=f"count:share:3/{k}")
        assert all(split.part(TINY, sampler(step)[0]) == k for step in range(60))
    with pytest.raises(ConfigError, match="uniform"):
        make_sampler("fair", TINY, 0, part="count:share:3/0")


def test_few_shot_parts_start_from_the_supernet_which_never_changes(supernet, fewshot):
    manifest = yaml.safe_load((Path(fewshot) / "fewshot.yaml").read_text())
    assert manifest["split"] == "count:identity:2" and manifest["parts"] == 2 and len(manifest["trained"]) == 2
    parent = load_checkpoint(supernet)
    for k in range(2):
        config = yaml.safe_load((Path(fewshot) / f"part{k}" / "config.yaml").read_text())
        assert config["train"]["part"] == f"count:identity:2/{k}"
        assert config["search_holdout"] == parent["run"]["search_holdout"]  # the fitness images stay unseen
        part = load_checkpoint(Path(fewshot) / f"part{k}" / "last.pt")
        assert any(not torch.equal(part["model"][n], w) for n, w in parent["model"].items())  # trained further
    first = min((Path(fewshot) / "part0").iterdir(), key=lambda p: p.stat().st_mtime)
    assert Path(supernet).stat().st_mtime < first.stat().st_mtime  # the supernet was read, never written


def test_every_architecture_is_scored_by_the_sub_supernet_its_split_assigns(supernet, fewshot):
    net, _ = load_supernet(supernet)
    batches, calib = FitnessSet("digits", "data", 200, 100, 1, 64).load(DIGITS)
    ranker = FewShotRanker(Evaluator(net, batches, calib), fewshot)
    parts = [Evaluator(load_supernet(Path(fewshot) / f"part{k}" / "last.pt")[0], batches, calib) for k in range(2)]
    rng = random.Random(5)
    archs = [DIGITS.sample(rng) for _ in range(12)]
    assert {ranker.part(a) for a in archs} == {0, 1}
    for arch in archs:
        assert ranker(arch) == parts[ranker.part(arch)](arch)


def test_few_shot_refuses_a_bad_split_and_a_folder_that_holds_parts(supernet, fewshot, tmp_path, capsys):
    assert main(["few-shot", "--supernet", supernet, "--split", "count:teleport:2", "--epochs", "1", "--out",
                 str(tmp_path / "fs")]) == 2
    assert "--split" in capsys.readouterr().err and not (tmp_path / "fs").exists()
    assert main(["few-shot", "--supernet", supernet, "--split", "count:identity:2", "--epochs", "1", "--out",
                 fewshot]) == 2
    assert "--resume" in capsys.readouterr().err
