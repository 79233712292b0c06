"""The ranking study: statistics on synthetic data, the data folders, bad input, and (slow) the command end to
end with parallel trials, killed and resumed."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import ROOT, SPACES
from psvit_nas import SearchSpace
from psvit_nas.cli import main
from psvit_nas.data import load_split
from psvit_nas.errors import ConfigError
from psvit_nas.study.data import gt_subset
from psvit_nas.study.stats import (ALL_TIED, TOO_FEW, evaluation_share, fmt, interval, kendall, noise_ceiling,
                                   paired_difference, seeds_needed, spearman, unpack)

TINY = ["--data", "digits", "--config", str(SPACES / "digits.yaml"), "--spread", "3", "--window", "2",
        "--epochs", "1", "--supernet-epochs", "2", "--samplers", "uniform", "--population", "4",
        "--generations", "2", "--holdout", "150", "--batch-size", "128", "--finalize-topk", "2",
        "--tune-samples", "2", "--probe-archs", "3", "--probe-epochs", "2", "--cpus-per-trial", "1",
        "--stages", "fitness", "retrain", "search", "after-search", "variants", "probe"]  # rankers: run_job below


# ----- statistics -----------------------------------------------------------------------------------------
def test_interval_of_a_known_order_and_its_reversal():
    x = list(range(8))
    assert interval(x, x, kendall) == pytest.approx((1.0, 1.0, 1.0))
    assert interval(x, x[::-1], spearman) == pytest.approx((-1.0, -1.0, -1.0))


def test_interval_contains_the_statistic():
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    value, low, high = interval(x.tolist(), y.tolist(), kendall)
    assert value == pytest.approx(stats.kendalltau(x, y).statistic)
    assert low < value < high


def test_paired_difference_resamples_the_same_architectures_for_both_rankers():
    """A ranker equal to the truth against its reversal differs by exactly 2 on every resample; two rankers that
    share their noise differ by nothing, however noisy each is."""
    rng = np.random.default_rng(2)
    y = np.arange(12.0)
    assert paired_difference(y, -y, y, kendall) == pytest.approx((2.0, 2.0, 2.0))
    noisy = y + rng.normal(0, 6, 12)
    value, low, high = paired_difference(noisy, noisy + 1e-9, y, kendall)
    assert value == low == high == 0.0
    assert interval(noisy, y, kendall)[2] - interval(noisy, y, kendall)[1] > 0.3  # each alone is uncertain


def test_degenerate_statistics_say_why_instead_of_nan():
    assert interval([1, 2, 3, 4], [5, 5, 5, 5], kendall) == ALL_TIED
    assert interval([1, 2], [1, 2], kendall) == TOO_FEW
    assert fmt(ALL_TIED) == "undefined (all tied)" and fmt(TOO_FEW) == "too few architectures"
    # three architectures, two tied on each side: most bootstrap resamples are all ties in x or in y
    value, low, high = interval([0, 0, 1], [0, 1, 1], kendall, resamples=200)
    assert value == pytest.approx(0.5) and low is None and high is None
    assert "interval undefined" in fmt((value, low, high))


def test_noise_ceiling_is_undefined_when_the_seeds_differ_as_much_as_the_architectures():
    """All seeds equal (a 1-epoch run at chance) or seed noise swamping the spread: undefined, not NaN."""
    assert noise_ceiling([[10.0, 10.0]] * 5) == {"ceiling": ALL_TIED, "self": ALL_TIED}
    assert noise_ceiling([[10.0, 12.0], [12.0, 10.0], [11.0, 11.0]])["ceiling"] == ALL_TIED
    assert noise_ceiling([[1.0, 1.0], [2.0, 2.0]])["ceiling"] == TOO_FEW


def test_noise_ceiling_follows_the_seed_noise():
    """Without seed noise a perfect ranker is perfect; with noise the ceiling drops and the model predicts the
    seed-against-seed tau that such seeds actually show."""
    clean = noise_ceiling([[a, a] for a in range(12)], draws=50)
    assert np.allclose([*clean["ceiling"], *clean["self"]], 1.0)
    rng = np.random.default_rng(3)
    truth = np.linspace(0, 3, 40)
    seeds = truth[:, None] + rng.normal(0, 1, (40, 2))
    noisy = noise_ceiling(seeds.tolist(), draws=300)
    measured = stats.kendalltau(seeds[:, 0], seeds[:, 1]).statistic
    assert noisy["self"][1] <= measured <= noisy["self"][2]
    assert noisy["self"][0] < noisy["ceiling"][0] < 0.9


def test_seeds_needed_grows_with_the_noise_and_one_seed_suffices_without_it():
    """Two means of k seeds agree at the target tau: k = 1 without noise, more seeds for more noise, none when
    the noise swamps the spread between architectures."""
    truth = np.linspace(0, 3, 12)
    assert seeds_needed([[a, a + 1e-3] for a in truth], 0.75) == 1
    needed = [seeds_needed([[a - d, a + d] for a in truth], 0.75) for d in (0.3, 0.5)]  # one run's variance 2d²
    assert needed[0] is not None and needed[1] is not None and 1 < needed[0] < needed[1]
    assert seeds_needed([[0.0, 5.0], [0.1, 4.9], [5.0, 0.0], [4.9, 0.1]], 0.75) is None  # noise swamps spread


def test_evaluation_share_is_all_of_the_noise_when_seeds_differ_only_by_the_images():
    """Two seeds whose hits are independent draws on the same images: the images explain the whole variance."""
    rng = np.random.default_rng(0)
    hits = [[(rng.random(3000) < p).astype(float) for _ in range(2)] for p in np.linspace(0.2, 0.5, 60)]
    share = evaluation_share(hits)
    assert share["archs"] == 60 and share["images"] == 3000 and 0.3 < share["disagree"] < 0.5
    assert 0.7 < share["from_images"] / share["observed"] < 1.4
    same = evaluation_share([[h[0], h[0]] for h in hits])
    assert same["observed"] == same["from_images"] == 0


# ----- data and bad input ---------------------------------------------------------------------------------
def test_gt_holdout_moves_training_images_but_no_fitness_image_into_validation(tmp_path, tiny_imagenet_dir):
    data = tiny_imagenet_dir
    space = SearchSpace.from_yaml(SPACES / "tiny_imagenet.yaml")
    train = load_split(str(data), "train", space)
    fitness = {p.name for p, _ in train.samples[:40]}
    folder = gt_subset(str(data), 7, fitness, tmp_path / "gt")
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


def _bad_records(tmp_path):
    out = tmp_path / "other"
    (out / "records").mkdir(parents=True)
    tiny_arch = "|".join(["-".join(["layer"] * 6)] * 3)  # tiny_imagenet's cells: not digits' space
    (out / "records" / "retrain-spread0-seed0.json").write_text(json.dumps({"arch": tiny_arch, "val_top1": 1}))
    return ["--out", str(out)]


@pytest.mark.parametrize("case, expected", [
    (lambda p: ["--samplers", "uniform", "sideways"], "--samplers"),
    (lambda p: ["--budget", "5G"], "--budget"),
    (lambda p: ["--budget", "1k"], "--budget"),
    (lambda p: ["--extra", "big=all-share"], "--extra"),
    (lambda p: ["--extra", "layers=all-teleport"], "unknown choice"),
    (lambda p: ["--epochs", "0"], "--epochs"),
    (lambda p: ["--seeds", "0", "1", "--named-seeds", "1", "2", "3"], "--named-seeds"),
    (lambda p: ["--stages", "retrain", "dance"], "--stages"),
    (lambda p: ["--data", str(p)], "not in the Tiny-ImageNet layout"),
    (lambda p: ["--data", str(p / "missing")], "no such folder"),
    (_bad_records, "records of another search space"),
])
def test_bad_input_is_one_line_and_exit_2_with_no_records(tmp_path, capsys, case, expected):
    (tmp_path / "junk.txt").write_text("not a dataset")
    extra = case(tmp_path)
    out = tmp_path / "study"
    argv = ["study", *TINY, "--out", str(out), "--work", str(tmp_path / "work"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists() and not (tmp_path / "work").exists()


# ----- the command end to end (slow) ----------------------------------------------------------------------
def _study(tmp_path, *extra, wait=True):
    cmd = [sys.executable, "-W", "ignore", "-m", "psvit_nas.cli", "study", *TINY, "--out", str(tmp_path / "study"),
           "--work", str(tmp_path / "runs"), "--results", str(tmp_path / "docs" / "results.md"), *extra]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=ROOT)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                            start_new_session=True)


def _jobs(tmp_path) -> int:
    """The TINY study's job count: 27, or 25 once tune's record shows that it kept the default recipe."""
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    return 25 if study["after_search"]["tune_kept_default"] else 27


def _check_result(tmp_path):
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    assert len(study["rows"]) == 5 and {r["group"] for r in study["rows"]} == {"spread", "window"}
    assert all(len(r["seeds"]) == 2 and "fitness_uniform" in r for r in study["rows"])
    ranking = study["ranking"]["all"]
    for stat in (ranking["self_tau"], ranking["ceiling"]["ceiling"]):  # defined or saying why: never NaN
        assert stat in (ALL_TIED, TOO_FEW) or (-1 <= stat[0] <= 1 and (stat[1] is None or stat[1] <= stat[2]))
    assert {"uniform", "macs", "params", "uniform-loss", "uniform-third", "uniform-nobn", "uniform-x2"} <= set(ranking)
    assert set(study["winners"]) == {"evolution", "random"}
    probe = study["schedule_probe"]
    assert probe["epochs"] == 2 and len(probe["rows"]) == 3 and {"macs", "short (mean of seeds)"} <= set(probe["tau"])
    after = study["after_search"]
    assert set(after["retrains"]) == {"top1", "finalized"} | (set() if after["tune_kept_default"] else {"tuned"})
    assert len(after["finalize"]["trials"]) == 2
    assert after["retrains"]["finalized"]["arch"] == after["finalize"]["arch"] and "lr" in after["tune"]["recipe"]
    assert after["retrains"]["top1"] == study["winners"]["evolution"]  # the search's top-1 is retrained once
    text = (tmp_path / "docs" / "results.md").read_text()
    total = _jobs(tmp_path)
    assert f"{total} of {total} jobs done" in text and "Kendall tau" in text and "(results.png)" in text
    assert "nan" not in text.lower().replace("finalized", "")
    for record in (tmp_path / "study" / "records").glob("retrain-*.json"):  # per-image hits and curves, as scored
        rec = json.loads(record.read_text())
        assert 100 * unpack(rec["val_correct"]).mean() == pytest.approx(rec["val_top1"])
        assert rec["curve"][-1] == pytest.approx(rec["val_top1"]) and rec["bn_batches"] == 10


@pytest.mark.slow
def test_study_command_runs_parallel_trials_and_resumes_after_a_kill(tmp_path):
    proc = _study(tmp_path, wait=False)
    records = tmp_path / "study" / "records"
    deadline = time.time() + 900
    while time.time() < deadline and len(list(records.glob("retrain-*.json"))) < 2:
        time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-study: trials in flight
    proc.wait()
    first_line = proc.stdout.readline()
    assert first_line.startswith("27 jobs, 27 to run") and "trials at once" in first_line
    kept = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in records.iterdir()}
    assert 2 <= len(kept) < 27

    done = _study(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # a trial that finished as the driver died may still have written its record: at most the kept ones rerun
    finished = sum(n.startswith(('retrain', 'supernet', 'search', 'finalize', 'tune')) for n in kept)
    to_run = int(re.match(r"27 jobs, (\d+) to run", done.stdout).group(1))  # tune had not run: 27 jobs
    assert 1 <= to_run <= 27 - finished
    assert "done (1 of" in done.stdout  # a progress line per finished job
    for name, (stamp, text) in kept.items():  # no finished job ran again
        if not name.startswith("fitness"):
            assert (records / name).stat().st_mtime_ns == stamp and (records / name).read_text() == text
    _check_result(tmp_path)
    from psvit_nas.cli import build_parser
    from psvit_nas.cli.study import _settings
    from psvit_nas.study import Study

    args = build_parser().parse_args(["study", *TINY, "--out", str(tmp_path / "study"), "--work",
                                      str(tmp_path / "runs"), "--results", str(tmp_path / "docs" / "results.md")])
    study = Study(_settings(args))  # the same study: a rerun would find nothing to do
    assert all(job in study.records for job in study.all_jobs())
    assert not any(study.pending(job) for job in study.fitness_jobs(variants=True))


@pytest.mark.slow
def test_a_record_is_the_same_alone_and_beside_another_trial(tmp_path, shared_ray):
    """Invariant 12: the same job with the same threads gives the same record in this process and as a Ray
    Tune trial running beside another."""
    from psvit_nas.study import Study, StudySettings
    from psvit_nas.study.jobs import run_job
    from psvit_nas.study.runner import run_trials

    def study(name):
        settings = StudySettings(config=str(SPACES / "digits.yaml"), data="digits", out=str(tmp_path / name),
                                 work=str(tmp_path / name / "work"), results=str(tmp_path / name / "r.md"),
                                 spread=2, window=0, epochs=1, batch_size=128, holdout=150, probe_archs=0)
        return Study(settings, threads=1)

    alone, parallel = study("alone"), study("parallel")
    jobs = alone.ground_truth_jobs()[:2]  # spread0 with seeds 0 and 1
    threads = torch.get_num_threads()
    try:
        run_job(alone.setup, jobs[0])
    finally:
        torch.set_num_threads(threads)
    run_trials(jobs, parallel.setup)
    a, b = alone.records.get(jobs[0]), parallel.records.get(jobs[0])
    assert {k: a[k] for k in ("val_top1", "val_loss", "val_correct", "curve")} == \
        {k: b[k] for k in ("val_top1", "val_loss", "val_correct", "curve")}
    digests = [json.loads((s.setup.folder(jobs[0]) / "metrics.jsonl").read_text().splitlines()[-1])
               ["weight_digests"] for s in (alone, parallel)]
    assert digests[0] == digests[1]


def _synthetic_study(tmp_path, extra=("layers=all-layer",), holdout=1500):
    """A digits study whose records are written by hand: 4 spread, 2 window and the named `extra` (the first, the
    baseline: by default the all-layer stack)."""
    from psvit_nas.study import Study, StudySettings

    settings = StudySettings(config=str(SPACES / "digits.yaml"), data="digits", out=str(tmp_path / "out"),
                             work=str(tmp_path / "work"), results=str(tmp_path / "results.md"), spread=4, window=2,
                             extra=extra, epochs=4, probe_archs=4, probe_epochs=2,
                             samplers=("uniform",), holdout=holdout)
    return Study(settings)


def _put_retrainings(study, curve) -> dict[str, float]:
    """Records of every architecture with seeds 0 and 1: top-1 20 + 3 x its index (+ the seed), the learning
    curve `curve(final)`; returns each name's seed-0 top-1."""
    acc = {a.name: 20.0 + 3 * i for i, a in enumerate(study.archs)}
    for a in study.archs:
        for seed in (0, 1):
            final = acc[a.name] + seed
            study.records.put(study.retrain(a.name, seed, a.arch), {
                "arch": str(a.arch), "seed": seed, "val_top1": final, "val_loss": 1.0, "minutes": 0.1,
                "curve": curve(final)})
    return acc


def test_a_named_extra_architecture_joins_every_job_of_the_window(tmp_path):
    from psvit_nas.study.jobs import SupernetJob

    study = _synthetic_study(tmp_path)
    layers = "|".join(["-".join(["layer"] * 4)] * 3)
    extra = [a for a in study.archs if a.name == "layers"]
    assert len(extra) == 1 and extra[0].group == "window" and str(extra[0].arch) == layers
    assert {(j.name, j.seed) for j in study.ground_truth_jobs() if j.arch == layers} == {("layers", 0), ("layers", 1)}
    assert all(layers in job.archs for job in study.fitness_jobs(variants=True))
    assert {"retrain-layers-seed0", "retrain-layers-seed1"} <= {j.key for j in study.all_jobs()}
    rankers = study.ranker_jobs()  # scored like the sampled ones; only fine-tuning needs a supernet
    assert all(layers in job.archs for job in rankers)
    assert study.supernets_needed(rankers, []) == [SupernetJob("uniform")]


def test_without_a_window_named_extras_stand_apart_at_any_macs(tmp_path):
    """The search's front (one delivered model per budget) against the family: no window to lie in."""
    from psvit_nas.study import Study, StudySettings

    tiny, huge = "front_small=" + "|".join(["identity-identity-identity-layer"] * 3), "front_big=all-layer"
    settings = StudySettings(config=str(SPACES / "digits.yaml"), data="digits", out=str(tmp_path / "out"),
                             work=str(tmp_path / "work"), results=str(tmp_path / "r.md"), spread=0, window=0,
                             extra=(tiny, huge), family=(1, 2),
                             seeds=(0,), named_seeds=(0, 1, 2, 3), samplers=("uniform",))
    study = Study(settings)
    assert [(a.name, a.group) for a in study.archs] == [("front_small", "extra"), ("front_big", "extra"),
                                                       ("layers1", "family"), ("layers2", "family")]
    assert {j.seed for j in study.ground_truth_jobs() if j.name == "front_small"} == {0, 1, 2, 3}
    with pytest.raises(ConfigError, match="outside the window"):  # with a window, an extra must lie in it
        Study(replace(settings, window=2, extra=(tiny,)))


def test_schedule_check_and_learning_curves_from_records(tmp_path):
    """The probe's order at 2 epochs against the study's 4: a known agreement, reported with its interval, and
    every run's curve plotted."""
    from psvit_nas.study import analyse, write_results

    study = _synthetic_study(tmp_path)
    acc = _put_retrainings(study, lambda final: [final / 4, final / 2, final * 0.9, final])
    short = {"spread0": 10.0, "spread1": 12.0, "spread2": 11.0, "spread3": 13.0}  # one pair swapped
    for job, a in zip(study.probe_jobs(), study.probe):
        study.records.put(job, {"arch": str(a.arch), "seed": 0, "val_top1": short[a.name], "val_loss": 1.0,
                                "minutes": 0.1, "curve": [short[a.name] / 2, short[a.name]]})
    result = analyse(study)
    probe = result["schedule_probe"]
    assert probe["epochs"] == 2 and [r["name"] for r in probe["rows"]] == list(short)
    tau = probe["tau"]["4 epochs, seed 0"]
    expected = stats.kendalltau(list(short.values()), [acc[n] for n in short]).statistic
    assert tau[0] == pytest.approx(expected) == pytest.approx(2 / 3) and tau[1] <= tau[0] <= tau[2]
    assert probe["tau"]["4 epochs (mean of seeds)"][0] == pytest.approx(expected)
    assert len(result["curves"]) == 7 * 2 + 4 and result["curves"]["retrain-layers-seed0"]["group"] == "extra"
    assert [r.get("name") for r in result["rows"] if r["group"] == "window"] == [None, None, "layers"]
    write_results(tmp_path / "results.md", result, study.settings, "psvit-nas study ...")
    text = (tmp_path / "results.md").read_text()
    assert "## The ground truth at a shorter schedule: 2 epochs against 4" in text
    assert "![learning curves](results-curves.png)" in text and (tmp_path / "results-curves.png").stat().st_size
    assert "inside the window" in text and "nan" not in text.lower()


def test_the_time_estimate_shares_the_work_among_trials_but_never_undercuts_the_longest_job(tmp_path):
    study = _synthetic_study(tmp_path, holdout=150)
    images, rate = study.train_images(), study.settings.est_images_per_s
    work = {job: job.images(study.settings, images) for job in study.planned()}
    longest = max(work, key=work.get)
    assert work[longest] > sorted(work.values())[-2] > 0  # the supernets train longer than any retraining
    total = sum(work.values())

    assert study.estimate_minutes(1) == pytest.approx(total / rate / 60)
    assert study.estimate_minutes(2) == pytest.approx(total / 2 / rate / 60)
    assert study.estimate_minutes(1000) == pytest.approx(work[longest] / rate / 60)  # one trial runs the longest
    for job, images_of_job in work.items():  # every training done but the longest
        if job != longest and images_of_job > 0:
            study.records.put(job, {"val_top1": 0.0})
    again = study.supernets_again()  # recorded, but their checkpoints are gone while their scoring jobs wait
    assert again and all(j.kind == "supernet" and j != longest for j in again)
    assert study.estimate_minutes(1) == pytest.approx((work[longest] + sum(work[j] for j in again)) / rate / 60)
    for job in study.jobs():  # every scoring job and search done too: no checkpoint is needed any more
        if job.scores or job.kind == "search":
            study.records.put(job, {arch: 0.0 for arch in job.archs} if job.scores else {"arch": ""})
    assert study.supernets_again() == []  # and more trials at once do not help
    assert study.estimate_minutes(2) == study.estimate_minutes(1) == pytest.approx(work[longest] / rate / 60)


def test_half_trained_jobs_run_first_and_count_only_their_epochs_left(tmp_path):
    from psvit_nas.study.runner import run_order

    study = _synthetic_study(tmp_path, extra=(), holdout=150)
    jobs = [j for j in study.planned() if j.kind == "retrain" and j.arch]  # not the searches' winners, unknown yet
    cost = lambda j: j.cost(study.settings, study.space)  # noqa: E731
    assert [cost(j) for j in run_order(jobs, study.setup)] == sorted(map(cost, jobs), reverse=True)
    cheapest = min(jobs, key=cost)
    assert cost(cheapest) < max(map(cost, jobs))
    (study.setup.folder(cheapest)).mkdir(parents=True)
    (study.setup.folder(cheapest) / "last.pt").write_bytes(b"")  # a kill left it mid-schedule
    order = run_order(jobs, study.setup)
    assert order[0] == cheapest and [cost(j) for j in order[1:]] == sorted(map(cost, order[1:]), reverse=True)
    full = study.estimate_minutes(1)  # and the time estimate counts only its epochs left
    (study.setup.folder(cheapest) / "metrics.jsonl").write_text('{"epoch": 1}\n')
    epochs, images = cheapest.epochs or study.settings.epochs, cheapest.images(study.settings, study.train_images())
    assert study.estimate_minutes(1) == pytest.approx(full - images / epochs / study.settings.est_images_per_s / 60)


def test_partial_training_order_and_named_architectures_against_the_baseline(tmp_path):
    """Curves whose order is reversed for two epochs and right from the third give tau -1 then 1 at those rungs,
    against both seeds; a named architecture's difference from the baseline takes all its --named-seeds and
    carries the pooled seed noise."""
    from dataclasses import replace

    from psvit_nas.study import Study, analyse, write_results

    first = _synthetic_study(tmp_path)
    window0 = next(a for a in first.archs if a.name == "window0")
    study = Study(replace(first.settings, extra=("layers=all-layer", f"mine={window0.arch}"), named_seeds=(0, 1, 2, 3)))
    named_jobs = {j.key for j in study.ground_truth_jobs() if j.seed in (2, 3)}
    assert named_jobs == {f"retrain-{n}-seed{k}" for n in ("layers", "mine") for k in (2, 3)}
    acc = _put_retrainings(study, lambda final: [100 - final, 100 - final, final - 1, final])
    for a in study.archs[-2:]:
        for seed in (2, 3):
            study.records.put(study.retrain(a.name, seed, a.arch), {
                "arch": str(a.arch), "seed": seed, "val_top1": acc[a.name] + seed, "val_loss": 1.0, "minutes": 0.1})
    result = analyse(study)
    partial = result["partial_training"]
    assert partial["archs"] == len(study.archs) and [p["epoch"] for p in partial["points"]] == [1, 2, 3, 4]
    assert partial["stale_bn"] == sum("reattn" in str(a.arch) for a in study.archs) > 0  # no bn_batches recorded
    for point, expected in zip(partial["points"], (-1, -1, 1, 1)):
        for against in ("same_run", "other_seed"):
            assert point[against][0] == pytest.approx(expected)
    named = result["named"]
    s2 = (6 * 0.5 + 2 * np.var([0, 1, 2, 3], ddof=1)) / 8  # six rows of two seeds, two of four
    assert named["baseline"]["name"] == "layers" and named["seed_variance"] == pytest.approx(s2)
    (mine,) = named["others"]
    assert mine["name"] == "mine" and len(mine["seeds"]) == 4
    assert mine["diff"] == pytest.approx(acc["mine"] - acc["layers"])
    assert mine["se"] == pytest.approx(np.sqrt(s2 / 4 + s2 / 4))
    assert [len(r["seeds"]) for r in result["rows"]] == [2] * 8  # the rankings take the study's seeds
    write_results(tmp_path / "results.md", result, study.settings, "psvit-nas study ...")
    text = (tmp_path / "results.md").read_text()
    assert "## How early the order shows: after k of 4 epochs" in text
    assert "## Named architectures against `layers`" in text and "trained before validation re-estimated" in text
    assert f"| +3.00 | {np.sqrt(s2 / 2):.2f} | better |" in text and "| `mine` | " in text


def test_the_delivered_architecture_against_the_obvious_models(tmp_path):
    """Finalize's pick less the search's top-1, random search's winner and each named architecture: each
    difference with its pooled standard error, the goal rows judged on random's winner and the baseline only (the
    top-1 and the other named architectures are context, no goal of their own)."""
    from psvit_nas.study import analyse, write_results
    from psvit_nas.study.goals import settled_goals
    from psvit_nas.study.jobs import FinalizeJob, SearchJob

    study = _synthetic_study(tmp_path, extra=("layers=all-layer", "reattns=all-reattn"))
    acc = _put_retrainings(study, lambda final: [final / 2, final])  # every row's seeds differ by 1: s2 = 0.5
    spread = [a for a in study.archs if a.group == "spread"]
    picks = {"winner-evolution": (spread[0].arch, 40.0), "winner-random": (spread[1].arch, 46.0),
             "finalized": (spread[2].arch, 45.0)}
    for name, (arch, top1) in picks.items():
        for seed in (0, 1):
            study.records.put(study.retrain(name, seed, arch), {"arch": str(arch), "seed": seed,
                                                                "val_top1": top1 + seed, "val_loss": 1.0})
    for strategy in ("evolution", "random"):
        study.records.put(SearchJob(strategy), {"arch": str(picks[f"winner-{strategy}"][0]), "fitness": 50.0,
                                                    "macs": 1e6})
    study.records.put(FinalizeJob(), {"arch": str(spread[2].arch), "search_rank": 3, "trials": [
        {"search_rank": 3, "search_fitness": 49.0, "score": 60.0, "epochs": 4}]})
    result = analyse(study)
    pays = result["search_pays"]
    assert pays["delivered"]["mean"] == 45.5 and pays["seed_variance"] == pytest.approx(0.5)
    se = np.sqrt(0.5 / 2 + 0.5 / 2)
    assert [r["label"] for r in pays["others"]] == ["the search's top-1", "random search's winner", "`layers`",
                                                    "`reattns`"]
    assert [r["role"] for r in pays["others"]] == ["top1", "random", "baseline", "named"]
    assert [r["diff"] for r in pays["others"]] == pytest.approx([5.0, -1.0, 45.5 - acc["layers"] - 0.5,
                                                                 45.5 - acc["reattns"] - 0.5])
    assert [r["se"] for r in pays["others"]] == pytest.approx([se] * 4)
    goals = {goal.split(" beats ")[1].split(" by ")[0]: met for goal, _, met in settled_goals(result, study.settings)
             if " beats " in goal}
    assert goals == {"random search's winner": False, "`layers`": True}  # -1.00 is within 2 SE; +7.00 is not
    write_results(tmp_path / "results.md", result, study.settings, "psvit-nas study ...")
    text = (tmp_path / "results.md").read_text()
    assert "## Does the search pay?" in text and "| finalize's pick (delivered) |" in text
    assert f"| +5.00 | {se:.2f} | better |" in text and f"| -1.00 | {se:.2f} | no |" in text


def test_the_tuned_recipe_is_retrained_from_tunes_record_and_only_when_it_differs_from_the_default(tmp_path):
    from psvit_nas.study.jobs import FinalizeJob, TuneJob, retrain_config
    from psvit_nas.tune.recipe_search import default_recipe

    study = _synthetic_study(tmp_path)
    assert [j.key for j in study.after_retrains(1)] == ["retrain-finalized-seed1", "retrain-tuned-seed1"]
    before = len(study.all_jobs())
    arch = str(study.archs[0].arch)
    study.records.put(FinalizeJob(), {"arch": arch, "search_rank": 1, "trials": []})
    default = default_recipe(study.space.spec(study.archs[0].arch))
    study.records.put(TuneJob(), {"arch": arch, "recipe": {**default, "lr": 5e-4}})
    final, tuned = study.after_retrains(0)  # no recipe file: tune's work folder may be gone
    assert (final.arch, tuned.arch, tuned.recipe["lr"], final.recipe) == (arch, arch, 5e-4, None)
    cfg = retrain_config(study.settings, study.space, tuned)
    assert (cfg.lr, cfg.epochs, cfg.seed) == (5e-4, 4, 0)
    study.records.put(TuneJob(), {"arch": arch, "recipe": default})  # tune kept the default: nothing to repeat
    assert [j.key for j in study.after_retrains(0)] == ["retrain-finalized-seed0"]
    assert len(study.all_jobs()) == before - 2 and "retrain-tuned-seed0" not in {j.key for j in study.all_jobs()}


def test_supernet_checkpoints_are_scored_as_they_are_and_never_trained_further(tmp_path):
    """Fitness at each checkpoint, fine-tuning and the proxies read the supernet and never change it."""
    from psvit_nas.rankers import Evaluator, FitnessSet, fitness_set_for
    from psvit_nas.train import load_supernet
    from psvit_nas.rankers.proxies import PROXIES
    from psvit_nas.rankers import ProxyRanker
    from psvit_nas.study import Study, StudySettings
    from psvit_nas.study.jobs import SupernetJob, run_job

    settings = StudySettings(config=str(SPACES / "digits.yaml"), data="digits", out=str(tmp_path / "out"),
                             work=str(tmp_path / "work"), results=str(tmp_path / "r.md"), spread=3, window=0,
                             supernet_epochs=2, score_every=1, holdout=150, batch_size=256, probe_archs=0,
                             samplers=("uniform",))
    study = Study(settings)
    threads = torch.get_num_threads()
    try:
        run_job(study.setup, SupernetJob("uniform"))
        folder = study.setup.folder(SupernetJob("uniform"))
        before = {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix in (".pt", ".jsonl")}
        assert {"epoch1.pt", "last.pt", "metrics.jsonl"} <= set(before)
        jobs = study.fitness_jobs(variants=False)
        assert [j.key for j in jobs] == ["fitness-uniform", "fitness-uniform-ep1"]
        rankers = study.ranker_jobs()
        assert [j.key for j in rankers] == [f"proxy-{p}" for p in PROXIES] + ["finetune-uniform"]
        for job in jobs + rankers:
            run_job(study.setup, job)
    finally:
        torch.set_num_threads(threads)
    # fine-tuning from the inherited weights works on copies: the checkpoints are byte-identical
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix in (".pt", ".jsonl")} == before
    finetuned = study.records.get(rankers[-1])
    assert set(finetuned) == {str(a.arch) for a in study.archs}
    assert all(v["loss"] > 0 and 0 <= v["top1"] <= 100 and v["seconds"] > 0 for v in finetuned.values())
    x, y = next(iter(FitnessSet("digits", "data", 150, 128, 0).load(study.space)[0]))
    snip = study.records.get(rankers[3])
    assert rankers[3].proxy == "snip" and all(
        snip[str(a.arch)]["score"] == ProxyRanker(study.space, "snip", (x, y))(a.arch) for a in study.archs)
    net, state = load_supernet(folder / "epoch1.pt")
    evaluator = Evaluator(net, *fitness_set_for(state, "epoch1.pt", None, None, None, 10).load(study.space))
    scores = study.records.get(jobs[1])
    assert all(scores[str(a.arch)]["top1"] == evaluator.metrics(a.arch)["top1"] for a in study.archs)


def test_tau_against_supernet_epochs_is_reported_from_each_checkpoint(tmp_path):
    """Fitness records at supernet epochs 5 and 10 and at the last (15): a ranking that sharpens with training."""
    from dataclasses import replace

    from psvit_nas.study import Study, analyse, write_results
    from psvit_nas.study.jobs import FitnessJob

    study = Study(replace(_synthetic_study(tmp_path).settings, score_every=5, probe_archs=0))
    assert study.scored_epochs("uniform") == [5, 10]
    assert study.scored_epochs("fair") == [1, 2]  # 5 paths a step, 3 epochs: scored at equal compute (5 and 10)
    truth = {}
    for i, a in enumerate(study.archs):
        truth[str(a.arch)] = float(i)
        for seed in (0, 1):
            study.records.put(study.retrain(a.name, seed, a.arch), {"arch": str(a.arch), "seed": seed,
                                                                    "val_top1": 20.0 + i + seed, "val_loss": 1.0})
    noise = np.random.default_rng(0).normal(size=len(truth))
    for epoch, scale in ((5, 10.0), (10, 1.0), (None, 0.0)):
        study.records.put(FitnessJob("uniform", epochs=epoch), {
            arch: {"top1": t + scale * n, "loss": 1.0} for (arch, t), n in zip(truth.items(), noise)})
    result = analyse(study)
    points = result["supernet_progress"]["uniform"]
    assert [p["epoch"] for p in points] == [p["compute"] for p in points] == [5, 10, 15]
    assert points[-1]["all"][0] == pytest.approx(1.0) and points[0]["all"][0] < points[-1]["all"][0]
    change = points[-1]["change"]  # the last checkpoint against the first, paired over the same architectures
    assert change[0] == pytest.approx(points[-1]["all"][0] - points[0]["all"][0]) and change[1] <= change[0]
    assert -1 <= points[-1]["macs"][0] <= 1
    write_results(tmp_path / "results.md", result, study.settings, "psvit-nas study ...")
    text = (tmp_path / "results.md").read_text()
    assert "## The supernets' ranking as they train" in text and "| uniform | 15 | 15 | 1.00 [1.00, 1.00] |" in text
    assert (tmp_path / "results-supernet.png").stat().st_size > 0


def test_rankers_and_the_calibrated_fit_are_reported_against_the_ground_truth(tmp_path):
    """Proxy and fitness records written by hand: a proxy that follows the ground truth exactly ranks at tau 1,
    and the calibrated ranker's leave-one-out predictions join the rankings and the report."""
    from psvit_nas.rankers.proxies import PROXIES
    from psvit_nas.study import analyse, write_results
    from psvit_nas.study.jobs import FitnessJob, ProxyJob

    study = _synthetic_study(tmp_path)
    truth = {str(a.arch): 20.0 + 2 * i for i, a in enumerate(study.archs)}
    for a in study.archs:
        for seed in (0, 1):
            study.records.put(study.retrain(a.name, seed, a.arch), {
                "arch": str(a.arch), "seed": seed, "val_top1": truth[str(a.arch)] + seed, "val_loss": 1.0})
    rng = np.random.default_rng(0)
    for p in PROXIES:
        exact = p == "synflow"
        study.records.put(ProxyJob(p), {arch: {"score": t if exact else float(rng.normal()), "seconds": 0.5}
                                            for arch, t in truth.items()})
    study.records.put(FitnessJob("uniform"), {arch: {"top1": t + 5 * float(rng.normal()), "loss": 1.0}
                                                  for arch, t in truth.items()})
    result = analyse(study)
    everywhere = result["ranking"]["all"]
    assert everywhere["synflow"]["tau"][0] == pytest.approx(1.0) and set(PROXIES) <= set(everywhere)
    assert "calibrated" in everywhere and -1 <= everywhere["calibrated"]["tau"][0] <= 1
    assert result["ranker_seconds"] == {p: pytest.approx(0.5) for p in PROXIES}
    assert "synflow" in result["composition"]["layer"]
    write_results(tmp_path / "results.md", result, study.settings, "psvit-nas study ...")
    text = (tmp_path / "results.md").read_text()
    assert "## Rankers beyond weight sharing" in text and "Best across the space: **synflow** at tau 1.00" in text


def test_a_supernet_whose_checkpoint_is_gone_is_trained_again_when_a_ranker_needs_it(tmp_path, monkeypatch):
    """Its record says done, but fine-tuning reads its weights: the first trials include it; proxies never
    need one."""
    import contextlib
    from dataclasses import replace

    from psvit_nas.study import Study
    from psvit_nas.study import study as study_module
    from psvit_nas.study.jobs import SupernetJob

    study = Study(replace(_synthetic_study(tmp_path).settings, stages=("rankers",)))
    study.records.put(SupernetJob("uniform"), {"epochs": 4, "paths_per_step": 1})
    ran = []
    monkeypatch.setattr(study_module, "ray_session", lambda *a, **k: contextlib.nullcontext(lambda: None))
    monkeypatch.setattr(study_module, "run_trials", lambda todo, *a, **k: ran.append([j.key for j in todo]))
    study.run()
    assert ran[0] == ["supernet-uniform"]
    assert sorted(ran[1]) == sorted([f"proxy-{p}" for p in ("synflow", "naswot", "grad_norm", "snip", "dss")]
                                    + ["finetune-uniform"])


def test_the_report_shows_the_command_that_continues_the_whole_study():
    from psvit_nas.cli.study import rerun_args

    argv = ["study", "--out", "x", "--stages", "retrain", "probe", "--epochs", "3", "--report-only"]
    assert rerun_args(argv) == ["study", "--out", "x", "--epochs", "3"]
