import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from conftest import ROOT, SPACES
from psvit_nas import SearchSpace
from psvit_nas.data import load_split


def _script():
    spec = importlib.util.spec_from_file_location("study_ranking", ROOT / "scripts" / "study_ranking.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _study(tmp_path, *extra):
    return subprocess.run(
        [sys.executable, "-W", "ignore", str(ROOT / "scripts" / "study_ranking.py"), "--data", "digits", "--config",
         str(ROOT / "search_spaces" / "digits.yaml"), "--spread", "3", "--window", "2", "--epochs", "1",
         "--supernet-epochs", "2", "--samplers", "uniform", "sandwich", "--population", "4", "--generations", "2",
         "--holdout", "150", "--batch-size", "128", "--finalize-topk", "2", "--tune-samples", "2",
         "--probe-archs", "3", "--probe-epochs", "2",
         "--out", str(tmp_path / "study"), "--work", str(tmp_path / "runs"),
         "--results", str(tmp_path / "docs" / "results.md"), *extra],
        capture_output=True, text=True, timeout=900, cwd=ROOT)


def test_study_script_runs_end_to_end_and_resumes_from_its_records(tmp_path):
    proc = _study(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "30 jobs, 30 to run" in proc.stdout
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    assert len(study["rows"]) == 5 and {r["group"] for r in study["rows"]} == {"spread", "window"}
    assert all(len(r["seeds"]) == 2 and "fitness_uniform" in r and "fitness_sandwich" in r for r in study["rows"])
    ranking = study["ranking"]["all"]
    for value, low, high in (ranking["self_tau"], ranking["ceiling"]["ceiling"]):
        assert -1 <= value <= 1 and low <= high
    assert {"uniform", "sandwich", "macs", "params", "uniform-loss", "uniform-third", "uniform-nobn",
            "uniform-x2"} <= set(ranking)
    assert study["composition"] and all(set(taus) == {"ground truth", "uniform", "sandwich"}
                                        for taus in study["composition"].values())
    assert set(study["winners"]) == {"evolution", "random"}
    probe = study["schedule_probe"]
    assert probe["epochs"] == 2 and len(probe["rows"]) == 3 and {"macs", "short (mean of seeds)"} <= set(probe["tau"])
    assert all(len(t) == 3 for t in probe["tau"].values())  # (tau, low, high)
    after = study["after_search"]
    assert set(after["retrains"]) == {"top1", "finalized", "tuned"} and len(after["finalize"]["trials"]) == 2
    assert after["retrains"]["finalized"]["arch"] == after["finalize"]["arch"] and "lr" in after["tune"]["recipe"]
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "30 of 30 jobs done" in text and "Kendall tau" in text and "(results.png)" in text
    assert "a perfect ranker would reach about" in text and "## What each ranking rewards" in text
    assert "Where the seed noise comes from (5 architectures with stored per-image hits)" in text
    for record in (tmp_path / "study" / "records").glob("retrain-*.json"):  # per-image hits, as scored
        rec = json.loads(record.read_text())
        assert 100 * _script().unpack(rec["val_correct"]).mean() == pytest.approx(rec["val_top1"])
    assert "The ground truth at a longer schedule: 2 epochs against 1" in text
    assert "What else moves the ranking (uniform supernet)" in text and "twice the supernet training" in text
    assert "After the search: `finalize` and `tune`" in text and "finalize's pick, tuned recipe" in text
    assert (tmp_path / "docs" / "results.png").stat().st_size > 0

    # a lost retraining is redone; every stored one is reused
    records = tmp_path / "study" / "records"
    (records / "retrain-spread1-seed1.json").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in records.iterdir()}
    proc = _study(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "30 jobs, 1 to run" in proc.stdout
    assert (records / "retrain-spread1-seed1.json").is_file()
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in records.iterdir() if p.name in stamps
               and not p.name.startswith("fitness"))


def test_noise_ceiling_follows_the_seed_noise():
    """Without seed noise a perfect ranker is perfect; with noise the ceiling drops and the model predicts the
    seed-against-seed tau that such seeds actually show."""
    ceiling = _script().noise_ceiling
    clean = ceiling([[a, a] for a in range(12)], draws=50)
    assert np.allclose([*clean["ceiling"], *clean["self"]], 1.0)
    rng = np.random.default_rng(3)
    truth = np.linspace(0, 3, 40)
    seeds = truth[:, None] + rng.normal(0, 1, (40, 2))
    noisy = ceiling(seeds.tolist(), draws=300)
    measured = stats.kendalltau(seeds[:, 0], seeds[:, 1]).statistic
    assert noisy["self"][1] <= measured <= noisy["self"][2]
    assert noisy["self"][0] < noisy["ceiling"][0] < 0.9


def test_gt_holdout_moves_training_images_but_no_fitness_image_into_validation(tmp_path, tiny_imagenet_dir):
    data = tiny_imagenet_dir
    space = SearchSpace.from_yaml(SPACES / "tiny_imagenet.yaml")
    train = load_split(str(data), "train", space)
    fitness = {p.name for p, _ in train.samples[:40]}
    folder = _script().gt_subset(str(data), 7, fitness, tmp_path / "gt")
    gt_train, gt_val = load_split(folder, "train", space), load_split(folder, "val", space)
    val = load_split(str(data), "val", space)
    classes = len(train.classes)
    assert len(gt_train) == len(train) - 7 * classes and len(gt_val) == len(val) + 7 * classes
    moved = [(p.name, y) for p, y in gt_val.samples[len(val):]]
    assert {n for n, _ in moved}.isdisjoint(fitness) and {n for n, _ in moved}.isdisjoint(
        p.name for p, _ in gt_train.samples)
    assert all(train.classes[y] == n.split("_")[0] for n, y in moved)  # each keeps its own class
    assert sorted(p.name for p, _ in gt_train.samples + gt_val.samples[len(val):]) == sorted(
        p.name for p, _ in train.samples)


def test_evaluation_share_is_all_of_the_noise_when_seeds_differ_only_by_the_images():
    """Two seeds whose hits are independent draws on the same images: the images explain the whole variance."""
    rng = np.random.default_rng(0)
    hits = [[(rng.random(3000) < p).astype(float) for _ in range(2)] for p in np.linspace(0.2, 0.5, 60)]
    share = _script().evaluation_share(hits)
    assert share["archs"] == 60 and share["images"] == 3000 and 0.3 < share["disagree"] < 0.5
    assert 0.7 < share["from_images"] / share["observed"] < 1.4
    same = _script().evaluation_share([[h[0], h[0]] for h in hits])
    assert same["observed"] == same["from_images"] == 0
