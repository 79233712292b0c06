"""Ray Tune after the search: finalize, tune, train --recipe, quickstart."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import SPACES
from psvit_nas import ArchSpec
from psvit_nas.cli import main
from psvit_nas.errors import ConfigError
from psvit_nas.tune import top_archs


def _read_trials(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def digits_search(tmp_path_factory):
    out = tmp_path_factory.mktemp("search")
    assert main(["train-supernet", "--config", str(SPACES / "digits.yaml"), "--out", str(out / "sn"), "--epochs",
                 "2", "--search-holdout", "200"]) == 0
    assert main(["evolve", "--supernet", str(out / "sn" / "last.pt"), "--flops", "1.2M", "--population", "6",
                 "--generations", "2", "--topk", "2", "--out", str(out / "search")]) == 0
    return out / "search"


@pytest.mark.slow
def test_quickstart_writes_every_step(tmp_path, capsys, shared_ray):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--fast"]) == 0
    for path in ("space.yaml", "supernet/last.pt", "supernet/metrics.jsonl", "search/best.yaml", "search/history.jsonl",
                 "final/final.yaml", "final/trials.csv", "final/learning_curves.png", "model.onnx"):
        assert (out / path).is_file(), path
    text = capsys.readouterr().out
    assert "[6/6] evaluate it on the validation split" in text and "top-1" in text
    assert "Each step by hand" in text and f"psvit-nas finalize --search {out / 'search'}" in text
    assert main(["quickstart", "--out", str(out)]) == 2  # a second run refuses to overwrite without --force


@pytest.mark.slow
def test_search_pipeline_never_reads_the_validation_split(tmp_path, tiny_imagenet_dir, capsys, shared_ray):
    """The dataset has no validation images at all: train-supernet with its defaults, evolve, finalize
    (complete-schedule halving) and tune must all run, choosing on held-out training images."""
    data = tmp_path / "data"
    wnids = (tiny_imagenet_dir / "wnids.txt").read_text().split()[:2]
    (data / "val").mkdir(parents=True)  # the folder is there, its images and annotations are not
    (data / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for w in wnids:  # 120 training images per class keep the trials short
        (data / "train" / w / "images").mkdir(parents=True)
        for image in sorted((tiny_imagenet_dir / "train" / w / "images").iterdir())[:120]:
            shutil.copy(image, data / "train" / w / "images")
    config = ["--config", str(SPACES / "tiny_imagenet.yaml"), "--data", str(data)]
    assert main(["train-supernet", *config, "--epochs", "1", "--search-holdout", "60", "--out",
                 str(tmp_path / "sn"), "--val-archs", "1"]) == 0
    assert main(["evolve", "--supernet", str(tmp_path / "sn" / "last.pt"), "--flops", "20M", "--population", "5",
                 "--generations", "1", "--topk", "3", "--out", str(tmp_path / "search")]) == 0

    assert main(["finalize", "--search", str(tmp_path / "search"), "--topk", "3", "--rungs", "1", "--epochs", "2",
                 "--out", str(tmp_path / "final")]) == 0
    final = ArchSpec.from_yaml(tmp_path / "final" / "final.yaml")
    table = final.metrics["finalize"]["trials"]
    first = [r for r in table if r["rung"] == 1]
    last = [r for r in table if r["rung"] == 2]
    assert len(first) == 3 and len(last) == 2 and all(r["completed"] for r in table)
    best_two = sorted(first, key=lambda r: -r["score"])[:2]
    assert {r["arch"] for r in last} == {r["arch"] for r in best_two}  # the rung's better half goes on
    assert str(final.arch) == table[0]["arch"] and table[0]["score"] == max(r["score"] for r in last)
    assert final.metrics["finalize"]["retrainings"] == pytest.approx((3 * 1 + 2 * 2) / 2)
    for rung in (1, 2):  # each rung's schedule anneals to its own end
        for metrics in (tmp_path / "final" / f"rung-{rung}" / "trials").glob("*/metrics.jsonl"):
            epochs = [json.loads(line) for line in metrics.read_text().splitlines()]
            assert len(epochs) == rung and epochs[-1]["lr"] == pytest.approx(1e-5, rel=0.05)
    assert final.metrics["fitness_set"]["holdout"] == 60  # as in best.yaml: eval --split search works on it
    assert main(["eval", "--arch", str(tmp_path / "final" / "final.yaml"), "--weights",
                 final.metrics["finalize"]["weights"], "--split", "search"]) == 0
    assert "rung-2" in final.metrics["finalize"]["weights"]
    rows = _read_trials(tmp_path / "final" / "trials.csv")
    assert [(r["rung"], r["label"].split(" ")[3]) for r in rows] == [
        (str(r["rung"]), f"#{r['search_rank']}") for r in table]
    assert (tmp_path / "final" / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"

    # killed between rungs: the rerun does not repeat the finished first rung
    finalize = ["finalize", "--search", str(tmp_path / "search"), "--topk", "3", "--rungs", "1", "--epochs", "2",
                "--out", str(tmp_path / "final")]
    done = {p: p.stat().st_mtime_ns for p in (tmp_path / "final").glob("rung-1/trials/*/metrics.jsonl")}
    shutil.rmtree(tmp_path / "final" / "rung-2")
    (tmp_path / "final" / "final.yaml").unlink()
    assert main(finalize) == 2  # the folder holds a run: it is not overwritten without --resume
    assert main([*finalize, "--resume"]) == 0
    assert len(done) == 3 and {p: p.stat().st_mtime_ns for p in
                               (tmp_path / "final").glob("rung-1/trials/*/metrics.jsonl")} == done
    resumed = ArchSpec.from_yaml(tmp_path / "final" / "final.yaml").metrics["finalize"]
    assert resumed["scheme"] == "halving 1" and [r["rung"] for r in resumed["trials"]] == [2, 2, 1, 1, 1]

    assert main(["tune", "--arch", str(tmp_path / "final" / "final.yaml"), "--samples", "2", "--epochs", "2",
                 "--out", str(tmp_path / "tune")]) == 0
    result = yaml.safe_load((tmp_path / "tune" / "recipe.yaml").read_text())
    rows = _read_trials(tmp_path / "tune" / "trials.csv")
    assert len(rows) == 2 and any(r["label"] == "default" for r in rows)
    best = rows[0]
    assert float(best["score"]) == pytest.approx(result["score"], abs=1e-3)
    assert float(best["lr"]) == pytest.approx(result["recipe"]["lr"], rel=1e-4)
    assert result["score"] >= max(float(r["score"]) for r in rows if r["completed"] == "True") - 1e-3
    default = next(r for r in rows if r["label"] == "default")
    assert result["score_at_default_epochs"] == pytest.approx(  # the winner where the default stopped
        float(best["curve"].split()[int(default["epochs"]) - 1]), abs=1e-2)

    assert main(["sample", "--config", str(SPACES / "digits.yaml"), "--out", str(tmp_path / "d.yaml")]) == 0
    assert main(["train", "--arch", str(tmp_path / "d.yaml"), "--recipe", str(tmp_path / "tune" / "recipe.yaml"),
                 "--data", "digits", "--epochs", "1", "--weight-decay", "0.123", "--out",
                 str(tmp_path / "retrain")]) == 0
    train = yaml.safe_load((tmp_path / "retrain" / "config.yaml").read_text())["train"]
    assert train["lr"] == pytest.approx(result["recipe"]["lr"])            # from the recipe
    assert train["weight_decay"] == 0.123                                  # given explicitly: wins


def test_finalize_flops_takes_the_fittest_within_the_budget(digits_search):
    """One multi-objective search feeds a finalize per budget: the top-k of those within it, fittest first."""
    history = [json.loads(line) for line in (digits_search / "history.jsonl").read_text().splitlines()]
    fittest = {}
    for r in sorted(history, key=lambda r: r["fitness"]):
        fittest[r["arch"]] = r
    budget = sorted(r["macs"] for r in fittest.values())[len(fittest) // 2]
    within = sorted((r for r in fittest.values() if r["macs"] <= budget), key=lambda r: (-r["fitness"], r["macs"]))
    _, best = top_archs(digits_search, 2, max_macs=budget)
    assert [r["arch"] for r in best] == [r["arch"] for r in within[:2]]
    assert all(r["macs"] <= budget for r in best) and len(within) < len(fittest)
    with pytest.raises(ConfigError, match="--flops: no architecture the search evaluated fits"):
        top_archs(digits_search, 1, max_macs=min(r["macs"] for r in history) - 1)
    with pytest.raises(ConfigError, match="within --flops"):
        top_archs(digits_search, len(within) + 1, max_macs=budget)


@pytest.mark.slow
def test_bad_input_one_line_exit_2(tmp_path, digits_search, capsys, shared_ray):
    (tmp_path / "empty").mkdir()
    bad_recipe = tmp_path / "recipe.yaml"
    bad_recipe.write_text("recipe: {lr: 0.001, momentum: 0.9}\n")
    cases = [
        (["finalize", "--search", str(tmp_path / "empty"), "--out", str(tmp_path / "f1")], "no search history"),
        (["finalize", "--search", str(digits_search), "--topk", "50", "--out", str(tmp_path / "f2")],
         "--topk: expected 1.."),
        (["finalize", "--search", str(digits_search), "--recipe", str(bad_recipe), "--out", str(tmp_path / "f3")],
         "recipe.yaml: recipe.momentum: unknown field"),
        (["finalize", "--search", str(digits_search), "--flops", "1K", "--out", str(tmp_path / "f7")],
         "history.jsonl: --flops: no architecture the search evaluated fits"),
        (["finalize", "--search", str(digits_search), "--flops", "lots", "--out", str(tmp_path / "f8")],
         "--flops: cannot parse budget"),
        (["finalize", "--search", str(digits_search), "--epochs", "0", "--out", str(tmp_path / "f4")],
         "--epochs: expected a positive number of epochs"),
        (["finalize", "--search", str(digits_search), "--epochs", "4", "--rungs", "2", "4", "--out",
          str(tmp_path / "f6")], "--rungs: expected rising epochs, each 1..3"),
        (["tune", "--arch", str(SPACES / "deit_tiny.yaml"), "--out", str(tmp_path / "t")],
         "fitness_set: this spec records no held-out training images"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not any((tmp_path / f).exists() for f in ("f1", "f2", "f3", "f4", "f6", "f7", "f8", "t"))
    # trials that raise (here: a batch larger than the training set) end in one line, exit 1, resumable
    huge = tmp_path / "huge.yaml"
    huge.write_text("recipe: {batch_size: 100000}\n")
    assert main(["finalize", "--search", str(digits_search), "--topk", "2", "--epochs", "1", "--recipe", str(huge),
                 "--out", str(tmp_path / "f5")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "2 of 2 trials failed" in err[-1] and "--resume" in err[-1] and "--batch-size" in err[-1]


@pytest.mark.slow
def test_killed_finalize_resumes_without_repeating_finished_trials(tmp_path, digits_search, shared_ray, capsys):
    out = tmp_path / "final"
    argv = [sys.executable, "-m", "psvit_nas.cli", "finalize", "--search", str(digits_search), "--topk", "3",
            "--epochs", "2", "--out", str(out)]
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    proc = subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def finished():
        return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("trials/*/metrics.jsonl")
                if len(p.read_text().splitlines()) == 2}
    deadline = time.time() + 300
    while not finished() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    time.sleep(1)  # let Tune record the finished trial in its experiment state (two more trials to go)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = finished()
    assert before and not (out / "final.yaml").exists()
    assert main(["finalize", "--search", str(digits_search), "--topk", "3", "--epochs", "2", "--out", str(out),
                 "--resume"]) == 0
    final = ArchSpec.from_yaml(out / "final.yaml")
    assert len(final.metrics["finalize"]["trials"]) == 3
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("trials/*/metrics.jsonl")}
    assert all(after[t] == m for t, m in before.items())  # finished trials were not run again
    for folder in out.glob("trials/*"):
        epochs = [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert epochs == list(range(1, len(epochs) + 1))  # resumed trials continued, no epoch twice

    # a kill while Tune writes experiment_state-*.json leaves it empty: --resume starts the experiment again,
    # and its trials find their folders (named by configuration): finished ones are not trained anew
    before = finished()
    for state in (out / "tune").glob("experiment_state-*.json"):
        state.write_text("")
    (out / "final.yaml").unlink()
    assert main(["finalize", "--search", str(digits_search), "--topk", "3", "--epochs", "2", "--out", str(out),
                 "--resume"]) == 0
    assert "starting it again" in capsys.readouterr().err
    assert len(ArchSpec.from_yaml(out / "final.yaml").metrics["finalize"]["trials"]) == 3
    again = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("trials/*/metrics.jsonl")}
    assert again.keys() == after.keys() and all(again[t] == m for t, m in before.items())


def test_trials_get_absolute_data_paths(tmp_path, monkeypatch):
    """Tune runs trials in their own working folders: a relative --data must not depend on the cwd."""
    from psvit_nas.data import CacheConfig
    from psvit_nas.tune import TrialSetup

    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    setup = TrialSetup({"data": "imgs", "data_dir": "data", "holdout": 10, "size": 10}, 1, 0, CacheConfig())
    assert setup.fitness["data"] == str(tmp_path / "imgs") and setup.fitness["data_dir"] == "data"
    assert TrialSetup({"data": "digits", "data_dir": "data", "holdout": 10, "size": 10}, 1, 0,
                      CacheConfig()).fitness["data"] == "digits"
