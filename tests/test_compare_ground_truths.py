"""scripts/compare_ground_truths.py on two records folders built here: its table of taus reads what they hold."""
import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest

from psvit_nas.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "tiny_imagenet.yaml"


def write_study(folder: Path, archs: list, space: SearchSpace, seeds: int = 2) -> None:
    """Records of a study whose truth is MACs with a seed's jitter, whose supernet first ranks by that truth
    (checkpoint 1 at 50 %) and then backwards, and one proxy."""
    folder.mkdir()
    rng = random.Random(0)
    macs = {str(a): space.cost_table.macs(a) / 1e6 for a in archs}
    for i, (arch, m) in enumerate(macs.items()):
        for seed in range(seeds):
            record = {"arch": arch, "seed": seed, "val_top1": m + rng.uniform(-1e-3, 1e-3)}
            (folder / f"retrain-a{i}-seed{seed}.json").write_text(json.dumps(record))
    (folder / "supernet-uniform.json").write_text(json.dumps({"epochs": 10}))
    (folder / "fitness-uniform-ep5.json").write_text(json.dumps({a: {"top1": m} for a, m in macs.items()}))
    (folder / "fitness-uniform.json").write_text(json.dumps({a: {"top1": -m} for a, m in macs.items()}))
    (folder / "proxy-synflow.json").write_text(json.dumps({a: {"score": rng.random()} for a in macs}))


def compare(monkeypatch, a: Path, b: Path, *extra: str) -> None:
    """The script's main, in this process (its imports are this session's), on the records folders `a` and `b`."""
    path = ROOT / "scripts" / "compare_ground_truths.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(sys, "argv", ["compare", "--a", str(a), "--b", str(b), "--space", str(SPACE), *extra])
    script.main()


def test_the_table_reads_each_truth_and_ranker(tmp_path, monkeypatch, capsys):
    space, rng = SearchSpace.from_yaml(SPACE), random.Random(1)
    archs = list({str(a): a for a in (space.sample(rng) for _ in range(9))}.values())[:8]
    write_study(tmp_path / "a", archs, space)
    write_study(tmp_path / "b", archs[:6], space, seeds=1)  # a study still running: one seed each
    with pytest.raises(SystemExit, match="only 0 architectures have 2 of seeds"):  # none has both seeds in b
        compare(monkeypatch, tmp_path / "a", tmp_path / "b")
    compare(monkeypatch, tmp_path / "a", tmp_path / "b", "--min-seeds", "1")
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:]
            for line in out.splitlines() if line.startswith("| ")}
    assert rows["architectures"] == ["6", "6 |"]
    assert rows["macs"][0].startswith("1.00") and rows["macs"][1].startswith("1.00")
    assert rows["supernet, checkpoint 1"][0].startswith("1.00 ") and "(50 %)" in rows["supernet, checkpoint 1"][0]
    assert rows["supernet, last checkpoint"][0].startswith("-1.00")
    assert "checkpoint 1 (50 %)" in rows["best supernet checkpoint - macs (paired)"][0]
    assert "best debiased supernet checkpoint - macs (paired)" in rows
    assert "with both seeds" in rows["seed against seed"][1]  # b's seed pairs are missing, and the cell says so
    assert {"proxy-synflow", "calibrated (leave-one-out)", "debiased supernet, last checkpoint"} <= set(rows)
    assert "The two ground truths against each other (seeds' means): tau 1.00" in out
