"""Can the supernet's ranking be trusted? A resumable study on real images.

1. Data: the first `--classes` classes of a Tiny-ImageNet-layout folder (a folder of links).
2. Architectures: `--spread` at MACs targets evenly spaced over the space's whole range, and
   `--window` inside +-10 % of one budget (the regime a real search works in), drawn with
   the budget-constrained sampler.
3. Ground truth: every architecture retrained from scratch with `--seeds` seeds; the
   seeds' agreement (Kendall tau with a bootstrap 90 % interval) says whether it holds.
4. Supernets, one per `--samplers`, at equal compute (images forwarded: a sampler that
   trains n paths a step gets 1/n of the epochs); each scores every architecture with
   inherited weights on its held-out training images.
5. tau and rho between fitness and the seeds' mean, with intervals, across the space and
   inside the window; the same for MACs alone and parameters alone (the baselines).
6. Evolution against random search at equal evaluations on the first sampler's supernet,
   both winners retrained with every seed; then `finalize` and `tune` on the evolution search.
7. What else moves tau, on the first sampler's supernet: ranking by loss instead of top-1,
   fewer fitness images, no BatchNorm recalibration, twice the supernet training.

Every finished job leaves a record in OUT/records (committed with the results) and every
run folder a checkpoint in WORK (mid-epoch ones too), so rerunning the same command
continues where it stopped; `--report-only` writes docs/results.md from what is there.

    python scripts/study_ranking.py --data ../shared/data/tiny-imagenet-100      # hours, resumable
    python scripts/study_ranking.py --data digits --config search_spaces/digits.yaml --spread 3 --window 2 \\
        --epochs 1 --supernet-epochs 1 --population 4 --generations 2 --out /tmp/s --work /tmp/s/runs
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import random
import shutil
import statistics
import time
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import yaml
from scipy import stats

from psvit_nas import Arch, ArchSpec, SearchSpace, format_macs, parse_budget
from psvit_nas.cli import main as cli
from psvit_nas.errors import ConfigError
from psvit_nas.data import CacheConfig, EvalBatches, holdout_split, load_images, load_split
from psvit_nas.io import atomic_write_text, pyplot, save_figure
from psvit_nas.search import Evaluator, fitness_set_for, load_supernet
from psvit_nas.samplers import make_sampler

ROOT = Path(__file__).resolve().parents[1]


def link_folder(folder: Path, wnids: list[str], fill: Callable[[Path], list[str]]) -> str:
    """Build a Tiny-ImageNet-layout folder of links once, atomically: `fill` links the images into a temporary
    sibling and returns its val_annotations lines; the folder is renamed into place when complete."""
    if not (folder / "wnids.txt").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "train").mkdir(parents=True)
        (tmp / "val").mkdir()
        annotations = fill(tmp)
        (tmp / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
        (tmp / "wnids.txt").write_text("\n".join(wnids) + "\n")
        tmp.rename(folder)
    return str(folder)


def read_wnids(src: Path) -> list[str]:
    return [w for w in (src / "wnids.txt").read_text().split() if w]


def class_subset(data: str, classes: int, folder: Path) -> str:
    """A Tiny-ImageNet-layout folder of links holding the first `classes` classes of `data`."""
    src = Path(data).resolve()
    if not (src / "wnids.txt").is_file() or classes <= 0:
        return data
    wnids = read_wnids(src)[:classes]

    def fill(tmp: Path) -> list[str]:
        for w in wnids:
            os.symlink(src / "train" / w, tmp / "train" / w)
        os.symlink(src / "val" / "images", tmp / "val" / "images")
        keep = set(wnids)
        return [line for line in (src / "val" / "val_annotations.txt").read_text().splitlines()
                if line.split("\t")[1:2] and line.split("\t")[1] in keep]

    return link_folder(folder, wnids, fill)


def gt_subset(data: str, per_class: int, fitness_images: set[str], folder: Path) -> str:
    """A Tiny-ImageNet-layout folder of links whose validation set also holds `per_class` training images of
    each class (never one of the supernet's fitness images), which its training set lacks: the ground
    truth's accuracy is then measured on more images, so it is less noisy (issue 9: at 1,500 validation
    images the seed-to-seed differences are the evaluation's sampling noise)."""
    src = Path(data).resolve()
    if per_class <= 0 or not (src / "wnids.txt").is_file():
        return data
    wnids = read_wnids(src)

    def fill(tmp: Path) -> list[str]:
        (tmp / "val" / "images").mkdir()
        annotations = (src / "val" / "val_annotations.txt").read_text().splitlines()
        for line in annotations:
            name = line.split("\t")[0]
            os.symlink((src / "val" / "images" / name).resolve(), tmp / "val" / "images" / name)
        for w in wnids:
            files = sorted((src / "train" / w / "images").iterdir())
            held = [f for f in files if f.name not in fitness_images][:per_class]
            if len(held) < per_class or len(files) == len(held):
                raise SystemExit(f"--gt-holdout: class {w} has too few training images for {per_class}")
            (tmp / "train" / w / "images").mkdir(parents=True)
            for f in files:
                os.symlink(f.resolve(), tmp / ("val/images" if f in held else f"train/{w}/images") / f.name)
            annotations += [f"{f.name}\t{w}" for f in held]
        return annotations

    return link_folder(folder, wnids, fill)


def pick_archs(space: SearchSpace, spread: int, window: int, budget: float, seed: int) -> dict[str, list[Arch]]:
    """`spread` archs at evenly spaced MACs targets over the whole range, `window` inside budget +-10 %."""
    rng = random.Random(seed)
    low, high = space.cost_table.macs_range
    chosen: dict[str, list[Arch]] = {"spread": [], "window": []}
    for i in range(spread):
        target = low + (high - low) * (i + 0.5) / spread
        chosen["spread"].append(space.sample(rng, max_macs=target * 1.05, min_macs=target * 0.95))
    while len(chosen["window"]) < window:
        arch = space.sample(rng, max_macs=budget * 1.1, min_macs=budget * 0.9)
        if arch not in chosen["window"] + chosen["spread"]:
            chosen["window"].append(arch)
    return chosen


# Other ways to score the first sampler's supernet: what else moves tau (issue 9's ablations).
VARIANTS = {"": {}, "third": {"share": 1 / 3}, "nobn": {"bn_batches": 0}, "x2": {"scale": 2}}
VARIANT_LABELS = {"loss": "ranked by held-out loss instead of top-1", "third": "a third of the held-out images",
                  "nobn": "no BatchNorm recalibration (the supernet's running statistics)",
                  "x2": "twice the supernet training (same sampler, twice the epochs)"}


class Study:
    """Jobs whose results are JSON records; a job that has a record is never run again."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out, self.work = args, Path(args.out), Path(args.work)
        (self.out / "records").mkdir(parents=True, exist_ok=True)

    def record(self, key: str) -> dict | None:
        path = self.out / "records" / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def done(self, key: str, value: dict) -> dict:
        atomic_write_text(self.out / "records" / f"{key}.json", json.dumps(value, indent=1))
        return value

    def _run(self, argv: list[str], folder: Path) -> float:
        """Run a training command into `folder` (resuming what a killed run left); minutes it took now."""
        resume = ["--resume"] if (folder / "last.pt").is_file() else []
        start = time.time()
        code = cli([*argv, "--out", str(folder), "--checkpoint-every-steps", "50", *resume])
        if code:
            raise SystemExit(f"{' '.join(argv)} failed with exit code {code}")
        return (time.time() - start) / 60

    def retrain(self, name: str, arch: Arch, seed: int, recipe: str | None = None, epochs: int | None = None) -> float:
        """Retrain `arch` from scratch: the study's recipe (for `epochs`, default --epochs), or the tuned `recipe`
        file for everything it sets."""
        a = self.args
        epochs = epochs or a.epochs
        key = f"retrain-{name}-seed{seed}" + (f"-e{epochs}" if epochs != a.epochs else "")
        if (rec := self.record(key)) is None:
            spec = self.work / f"{name}.yaml"
            self.space.spec(arch).to_yaml(spec)
            folder = self.work / key
            schedule = ["--recipe", recipe] if recipe else \
                ["--lr", str(a.retrain_lr), "--warmup-epochs", str(min(1.0, epochs / 2))]
            minutes = self._run(["train", "--arch", str(spec), "--data", self.gt_data, "--epochs", str(epochs), "--seed",
                       str(seed), "--batch-size", str(a.batch_size), *schedule], folder)
            row = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
            rec = self.done(key, {"arch": str(arch), "seed": seed, "val_top1": row["val_top1"],
                                  "val_loss": row["val_loss"], "minutes": minutes})
        checkpoint = self.work / key / "last.pt"
        if "val_correct" not in rec and checkpoint.is_file():  # also fills older records in
            if (hits := self.correct(checkpoint, arch)) is not None:
                rec = self.done(key, {**rec, "val_correct": hits})
        return rec["val_top1"]

    @cached_property
    def gt_val(self) -> EvalBatches:
        """The ground truth's evaluation images, decoded once."""
        val = load_images(self.gt_data, "val", self.space, cache=CacheConfig())
        return EvalBatches(val, self.space.image_size, 250, workers=0, keep=True)

    def correct(self, checkpoint: Path, arch: Arch) -> str | None:
        """Which ground-truth validation images the model classifies correctly, as a hex bit string (None for
        a checkpoint the current model no longer loads: one trained before a layer changed shape)."""
        import torch

        from psvit_nas.cli.models import load_weights

        try:
            model = load_weights(str(checkpoint), self.space.spec(arch)).eval()
        except ConfigError as err:
            print(f"no per-image hits: {err}", flush=True)
            return None
        with torch.no_grad():
            hits = np.concatenate([(model(x).argmax(1) == y).numpy() for x, y in self.gt_val])
        return np.packbits(hits).tobytes().hex() + f":{len(hits)}"

    def supernet(self, sampler: str, scale: int = 1) -> Path:
        """The supernet of `sampler` at `scale` times the study's compute (images forwarded)."""
        a = self.args
        paths = len(make_sampler(sampler, self.space, 0)(0))
        epochs = max(1, round(a.supernet_epochs * scale / paths))  # equal compute: images forwarded
        key = f"supernet-{sampler}" + (f"-x{scale}" if scale != 1 else "")
        folder = self.work / key
        if self.record(key) is None or not (folder / "last.pt").is_file():
            extra = ["--distill-weight", str(a.distill_weight)] if sampler == "sandwich" else []
            minutes = self._run(["train-supernet", "--config", a.config, "--data", self.data, "--epochs", str(epochs),
                                 "--sampler", sampler, "--lr", str(a.lr), "--batch-size", str(a.batch_size),
                                 "--search-holdout", str(a.holdout), "--val-archs", "2", *extra], folder)
            self.done(key, {"epochs": epochs, "paths_per_step": paths, "minutes": minutes,
                            **({"distill_weight": a.distill_weight} if extra else {})})
        return folder / "last.pt"

    def fitness(self, sampler: str, archs: list[Arch], variant: str = "") -> dict[str, dict[str, float]]:
        """Top-1 and loss of `archs` with inherited weights on the held-out images; `variant` is one of
        VARIANTS (the same supernet scored another way, or a longer-trained one)."""
        key = f"fitness-{sampler}" + (f"-{variant}" if variant else "")
        rec = self.record(key) or {}
        missing = [a for a in archs if str(a) not in rec]
        if missing:
            how = VARIANTS[variant]
            checkpoint = self.supernet(sampler, how.get("scale", 1))
            net, state = load_supernet(checkpoint)
            size = round(self.args.holdout * how["share"]) if "share" in how else None
            batches, calib = fitness_set_for(state, str(checkpoint), None, None, size,
                                             how.get("bn_batches", 10)).load(self.space)
            evaluator = Evaluator(net, batches, calib)
            for arch in missing:
                m = evaluator.metrics(arch)
                rec[str(arch)] = {"top1": m["top1"], "loss": m["loss"]}
            self.done(key, rec)
        return {str(a): rec[str(a)] for a in archs}

    def search(self, strategy: str) -> str:
        key = f"search-{strategy}"
        if (rec := self.record(key)) is None:
            a = self.args
            folder = self.work / key
            argv = ["evolve", "--supernet", str(self.supernet(a.samplers[0])), "--flops", str(self.budget),
                    "--strategy", strategy, "--population", str(a.population), "--generations", str(a.generations),
                    "--topk", str(max(2, a.population // 5)), "--out", str(folder)]
            if cli(argv + (["--resume"] if (folder / "search_state.json").is_file() else [])):
                raise SystemExit(f"{strategy} search failed")
            best = ArchSpec.from_yaml(folder / "best.yaml")
            rec = self.done(key, {"arch": str(best.arch), "fitness": best.metrics["fitness"],
                                  "macs": best.metrics["macs"]})
        return rec["arch"]


    def after_search(self, command: str, argv: list[str]) -> dict:
        """`finalize` or `tune` (Ray Tune) on the evolution search: resumed if a killed run left an experiment."""
        key = command
        if (rec := self.record(key)) is None:
            folder = self.work / key
            resume = ["--resume"] if (folder / "tune").is_dir() else []
            start = time.time()
            if cli([command, *argv, "--epochs", str(self.args.epochs), "--out", str(folder), *resume]):
                raise SystemExit(f"{command} failed")
            if command == "finalize":
                final = ArchSpec.from_yaml(folder / "final.yaml")
                rec = {"arch": str(final.arch), **{k: final.metrics["finalize"][k] for k in ("search_rank", "trials")}}
            else:
                rec = yaml.safe_load((folder / "recipe.yaml").read_text())
            rec = self.done(key, {**rec, "minutes": (time.time() - start) / 60})
        return rec


def interval(x: list[float], y: list[float], fn, resamples: int = 2000) -> tuple[float, float, float]:
    """(statistic, low, high): a 90 % percentile bootstrap interval over paired architectures.

    Resamples whose statistic is undefined (all ties) are dropped.
    """
    value = float(fn(x, y).statistic)
    rng = np.random.default_rng(0)
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    draws = [fn(xs[i], ys[i]).statistic for i in rng.integers(0, len(xs), (resamples, len(xs)))]
    draws = np.asarray([d for d in draws if np.isfinite(d)])
    if len(draws) < resamples // 2:
        return value, float("nan"), float("nan")
    return value, float(np.percentile(draws, 5)), float(np.percentile(draws, 95))


def unpack(bits: str) -> np.ndarray:
    """The per-image hits stored by `Study.correct`."""
    hexed, n = bits.split(":")
    return np.unpackbits(np.frombuffer(bytes.fromhex(hexed), np.uint8))[: int(n)].astype(float)


def evaluation_share(hits: list[list[np.ndarray]]) -> dict[str, float] | None:
    """How much of the seed-to-seed differences the evaluation images alone explain.

    `hits[arch][seed]` are per-image hits of two seeds. The seeds' difference in top-1 (points) has a
    sampling variance over images of var(hit0 - hit1) / N; its mean over architectures against the mean
    squared difference measured says whether more evaluation images (not more seeds or epochs) would make
    the ground truth reproduce.
    """
    pairs = [h for h in hits if len(h) >= 2]
    if len(pairs) < 3:
        return None
    observed = float(np.mean([(100 * (h[0].mean() - h[1].mean())) ** 2 for h in pairs]))
    images = float(np.mean([1e4 * np.var(h[0] - h[1], ddof=1) / len(h[0]) for h in pairs]))
    return {"archs": len(pairs), "images": len(pairs[0][0]), "observed": observed, "from_images": images,
            "disagree": float(np.mean([np.mean(h[0] != h[1]) for h in pairs]))}


def noise_ceiling(seeds: list[list[float]], draws: int = 2000) -> dict[str, tuple[float, float, float]]:
    """What seed noise alone allows: (mean, 5th, 95th percentile) of the Kendall tau a perfect ranker would
    reach against the seeds' mean ("ceiling"), and of seed against seed ("self", to check the model).

    Model: each seed's accuracy is the true one plus N(0, s2), s2 the pooled variance between seeds; the
    true accuracies are the means shrunk toward their average until their variance is the means' less s2/n.
    """
    acc = np.asarray(seeds, float)
    n, mean = acc.shape[1], acc.mean(axis=1)
    s2 = acc.var(axis=1, ddof=1).mean()
    spread = mean.var(ddof=1)
    truth = mean.mean() + (mean - mean.mean()) * (np.sqrt(max(spread - s2 / n, 0.0) / spread) if spread else 0)
    rng = np.random.default_rng(0)

    def seed() -> np.ndarray:
        return truth + rng.normal(0, np.sqrt(s2), len(truth))

    def summary(taus: list[float]) -> tuple[float, float, float]:
        return float(np.mean(taus)), float(np.percentile(taus, 5)), float(np.percentile(taus, 95))

    return {"ceiling": summary([stats.kendalltau(truth, np.mean([seed() for _ in range(n)], axis=0)).statistic
                                for _ in range(draws)]),
            "self": summary([stats.kendalltau(seed(), seed()).statistic for _ in range(draws)])}


def fmt(t: tuple[float, float, float]) -> str:
    return f"{t[0]:.2f} [{t[1]:.2f}, {t[2]:.2f}]"


def estimate_minutes(args: argparse.Namespace, study: Study, jobs: list[str], images: int) -> float:
    """Rough minutes for the jobs without a record: images x epochs at --est-images-per-s."""
    todo = [j for j in jobs if study.record(j) is None]
    retrains = sum(int(j.rsplit("-e", 1)[1]) / args.epochs if j.rsplit("-", 1)[1].startswith("e") else 1
                   for j in todo if j.startswith("retrain"))
    supernets = sum(2 if j.endswith("-x2") else 1 for j in todo if j.startswith("supernet"))
    return (retrains * args.epochs + supernets * args.supernet_epochs) * images / args.est_images_per_s / 60


def probe_archs(spread: list[Arch], k: int) -> list[tuple[str, Arch]]:
    """`k` of the spread architectures, evenly spaced over their MACs order, with their study names."""
    picks = sorted({round(i * (len(spread) - 1) / (k - 1)) for i in range(k)}) if k > 1 else list(range(k))
    return [(f"spread{i}", spread[i]) for i in picks if i < len(spread)]


def schedule_probe(study: Study, result: dict, probe: list[tuple[str, Arch]]) -> dict | None:
    """The probe's architectures at the study's schedule and at --probe-epochs, and who ranks the long one."""
    a = study.args
    by_arch = {r["arch"]: r for r in result["rows"]}
    rows = []
    for name, arch in probe:
        rec = study.record(f"retrain-{name}-seed{a.seeds[0]}-e{a.probe_epochs}")
        if rec and str(arch) in by_arch:
            rows.append({"name": name, **by_arch[str(arch)], "long": rec["val_top1"]})
    if len(rows) < 3:
        return None
    long = [r["long"] for r in rows]
    tau = {"short (mean of seeds)": [r["mean"] for r in rows], "macs": [r["macs"] for r in rows]}
    tau.update({f"supernet fitness ({s})": [r.get(f"fitness_{s}") for r in rows] for s in a.samplers})
    return {"epochs": a.probe_epochs, "rows": rows,
            "tau": {k: interval(v, long, stats.kendalltau) for k, v in tau.items() if None not in v}}


def rankers(a: argparse.Namespace) -> list[tuple[str, Callable[[dict], float | None]]]:
    """(name, score of a row) for every way the study ranks architectures by their supernet: each sampler's
    fitness, then the first sampler's variants (VARIANT_LABELS); a higher score means a better rank."""
    first = a.samplers[0]
    out = [(s, lambda r, s=s: r.get(f"fitness_{s}")) for s in a.samplers]
    out.append((f"{first}-loss", lambda r: -r[f"loss_{first}"] if f"loss_{first}" in r else None))
    return out + [(f"{first}-{v}", lambda r, v=v: r.get(f"fitness_{first}-{v}")) for v in VARIANTS if v]


def analyse(study: Study, archs: dict[str, list[Arch]], seeds: list[int]) -> dict:
    space, a = study.space, study.args
    rows, hits = [], {}
    for group, members in archs.items():
        for i, arch in enumerate(members):
            accs = [study.record(f"retrain-{group}{i}-seed{s}") for s in seeds]
            if any(r is None for r in accs):
                continue
            if all("val_correct" in r for r in accs):
                hits[str(arch)] = [unpack(r["val_correct"]) for r in accs]
            cost = space.cost_table(arch)
            row = {"group": group, "arch": str(arch), "macs": cost.macs, "params": cost.params,
                   "seeds": [r["val_top1"] for r in accs]}
            row["mean"] = statistics.fmean(row["seeds"])
            for key in [f"fitness-{s}" for s in a.samplers] + [f"fitness-{a.samplers[0]}-{v}" for v in VARIANTS if v]:
                value = (study.record(key) or {}).get(str(arch))
                if value is not None:
                    row[key.replace("fitness-", "fitness_", 1)] = value["top1"]
                    row[key.replace("fitness-", "loss_", 1)] = value["loss"]
            rows.append(row)
    result = {"rows": rows, "seeds": seeds, "ranking": {}}
    for scope in ("all", "window"):
        part = [r for r in rows if scope == "all" or r["group"] == "window"]
        if len(part) < 3:
            continue
        mean = [r["mean"] for r in part]
        entry = {"archs": len(part),
                 "self_tau": interval([r["seeds"][0] for r in part], [r["seeds"][1] for r in part],
                                      stats.kendalltau) if len(seeds) > 1 else None,
                 "ceiling": noise_ceiling([r["seeds"] for r in part]) if len(seeds) > 1 else None,
                 "evaluation": evaluation_share([hits[r["arch"]] for r in part if r["arch"] in hits]),
                 "macs": {"tau": interval([r["macs"] for r in part], mean, stats.kendalltau),
                          "rho": interval([r["macs"] for r in part], mean, stats.spearmanr)},
                 "params": {"tau": interval([r["params"] for r in part], mean, stats.kendalltau),
                            "rho": interval([r["params"] for r in part], mean, stats.spearmanr)}}
        for name, score in rankers(a):
            if all(score(r) is not None for r in part):
                fit = [score(r) for r in part]
                entry[name] = {"tau": interval(fit, mean, stats.kendalltau),
                               "rho": interval(fit, mean, stats.spearmanr)}
        result["ranking"][scope] = entry
    result["composition"] = composition(rows, a.samplers, space)
    winners = {}
    for strategy in ("evolution", "random"):
        rec = study.record(f"search-{strategy}")
        accs = [study.record(f"retrain-winner-{strategy}-seed{s}") for s in seeds]
        if rec and all(accs):
            winners[strategy] = {**rec, "seeds": [r["val_top1"] for r in accs]}
    result["winners"] = winners
    after = {}
    for name in ("top1", "finalized", "tuned"):
        accs = [study.record(f"retrain-{name}-seed{s}") for s in seeds]
        if all(accs):
            after[name] = {"arch": accs[0]["arch"], "seeds": [r["val_top1"] for r in accs]}
    result["after_search"] = {"retrains": after, "finalize": study.record("finalize"), "tune": study.record("tune")}
    return result


def composition(rows: list[dict], samplers: list[str], space: SearchSpace) -> dict[str, dict]:
    """Kendall tau (with interval) between each choice's number of cells and the seeds' mean, and each
    sampler's fitness: what the ground truth and each supernet reward."""
    if len(rows) < 3:
        return {}
    choices = list(dict.fromkeys(c for stage in space.stages for c in stage.choices))
    scores = {"ground truth": [r["mean"] for r in rows]}
    scores.update({s: [r[f"fitness_{s}"] for r in rows] for s in samplers if all(f"fitness_{s}" in r for r in rows)})
    out = {}
    for choice in choices:
        counts = [sum(c == choice for stage in Arch.parse(r["arch"]).stages for c in stage) for r in rows]
        if len(set(counts)) > 1:
            out[choice] = {name: interval(counts, score, stats.kendalltau) for name, score in scores.items()}
    return out


def scatter(result: dict, sampler: str, path: Path) -> bool:
    rows = [r for r in result["rows"] if f"fitness_{sampler}" in r]
    if not rows:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in rows:
        x = r[f"fitness_{sampler}"]
        ax.plot([x, x], [min(r["seeds"]), max(r["seeds"])], color="0.7", lw=1, zorder=1)
    for k, marker in enumerate("os"):
        points = ax.scatter([r[f"fitness_{sampler}"] for r in rows], [r["seeds"][k] for r in rows],
                            c=[r["macs"] / 1e6 for r in rows], cmap="viridis", marker=marker, s=36, zorder=2,
                            label=f"seed {result['seeds'][k]}", edgecolors=["red" if r["group"] == "window" else
                                                                           "none" for r in rows])
    fig.colorbar(points, ax=ax, label="MACs (M)")
    ax.set_xlabel(f"inherited-weight fitness, {sampler} supernet (held-out train top-1 %)")
    ax.set_ylabel("retrained from scratch: val top-1 (%)")
    ax.set_title("supernet ranking against retraining (red edge: budget window)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    return True


def write_results(path: Path, result: dict, study: Study, command: str, jobs: list[str]) -> None:
    a, space = study.args, study.space
    done = sum(study.record(j) is not None for j in jobs)
    data_text = f"the first {a.classes} classes of `{a.data}`" if Path(a.data).is_dir() else f"`{a.data}`"
    out = Path(a.out).resolve()
    where = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    lines = ["# Search quality on real images", "",
             f"Written by `scripts/study_ranking.py` from its records in `{where}/records`: "
             f"**{done} of {len(jobs)} jobs done**; rerun the command to continue:", "",
             "```bash", command, "```", "",
             f"Data: {data_text}; space `{space.name}`; every architecture "
             f"retrained from scratch for {a.epochs} epochs (batch {a.batch_size}, lr {a.retrain_lr}) with seeds "
             f"{', '.join(map(str, result['seeds']))}"
             + (f" and scored on the validation images plus {a.gt_holdout} training images per class that its "
                "training left out (none of them a fitness image)" if a.gt_holdout else "")
             + f"; supernets trained at equal compute ({a.supernet_epochs} uniform-path epochs' worth of images"
             + (f"; sandwich students' loss {a.distill_weight:g} distillation, the rest labels" if "sandwich" in
                a.samplers else "") + f"), {a.holdout} training images held out for fitness. Intervals "
             "are 90 % percentile bootstrap intervals over architectures.", ""]
    lines += goals_section(result, a)
    for scope, entry in result["ranking"].items():
        title = "across the space" if scope == "all" else \
            f"inside the window ({format_macs(study.budget)} MACs +-10 %)"
        lines += [f"## Ranking {title}: {entry['archs']} architectures", ""]
        if entry["self_tau"]:
            noise = entry["ceiling"]
            lines += [f"Ground truth, seed against seed: **Kendall tau {fmt(entry['self_tau'])}**. At this seed "
                      f"noise a perfect ranker would reach about **tau {fmt(noise['ceiling'])}** against the seeds' "
                      f"mean: the noise ceiling of every tau below (`noise_ceiling` in the script; the same model "
                      f"predicts a seed-against-seed tau of {fmt(noise['self'])}).", ""]
        if (ev := entry["evaluation"]) and ev["observed"] > 0:
            share = ev["from_images"] / ev["observed"]
            verdict = "More evaluation images, not more seeds or epochs, is what would reduce it" if share > 0.5 \
                else "The larger part is training noise: more seeds per architecture or a longer schedule would reduce it"
            lines += [f"Where the seed noise comes from ({ev['archs']} architectures with stored per-image hits): "
                      f"the two seeds disagree on {100 * ev['disagree']:.0f} % of the {ev['images']} evaluation "
                      f"images, so sampling those images alone gives their top-1 difference a variance of "
                      f"{ev['from_images']:.2f} points², against {ev['observed']:.2f} measured ({100 * share:.0f} %). "
                      f"{verdict}.", ""]
        lines += ["| ranked by | Kendall tau | Spearman rho |", "|---|---|---|"]
        for name in [*a.samplers, "macs", "params"]:
            if name in entry:
                label = f"supernet fitness ({name})" if name in a.samplers else f"{name} alone"
                lines.append(f"| {label} | {fmt(entry[name]['tau'])} | {fmt(entry[name]['rho'])} |")
        lines.append("")
    lines += variants_section(result, a)
    lines += composition_section(result["composition"])
    lines += ["## Architectures", "", "| group | MACs | params | " + " | ".join(f"fitness {s}" for s in a.samplers)
              + " | " + " | ".join(f"seed {s}" for s in result["seeds"]) + " | arch |",
              "|---|---:|---:|" + "---:|" * (len(a.samplers) + len(result["seeds"])) + "---|"]
    for r in sorted(result["rows"], key=lambda r: r["macs"]):
        fits = " | ".join(f"{r[f'fitness_{s}']:.2f}" if f"fitness_{s}" in r else "" for s in a.samplers)
        lines.append(f"| {r['group']} | {format_macs(r['macs'])} | {r['params'] / 1e6:.3f}M | {fits} | "
                     + " | ".join(f"{v:.2f}" for v in r["seeds"]) + f" | `{r['arch'].replace('|', '/')}` |")
    lines.append("")
    if scatter(result, a.samplers[0], path.with_suffix(".png")):  # one plot per results file
        lines += [f"![ranking]({path.with_suffix('.png').name})", ""]
    if result["winners"]:
        lines += [f"## Evolution against random search ({format_macs(study.budget)} MACs, equal evaluations)", "",
                  "| strategy | fitness | MACs | retrained (each seed) | mean | arch |", "|---|---:|---:|---|---:|---|"]
        for k, w in result["winners"].items():
            lines.append(f"| {k} | {w['fitness']:.2f} | {format_macs(w['macs'])} | "
                         f"{', '.join(f'{v:.2f}' for v in w['seeds'])} | {statistics.fmean(w['seeds']):.2f} | "
                         f"`{w['arch'].replace('|', '/')}` |")
        lines.append("")
    lines += probe_section(result["schedule_probe"], a)
    lines += after_search_section(result["after_search"], a)
    atomic_write_text(path, "\n".join(lines))


def goals_section(result: dict, a: argparse.Namespace) -> list[str]:
    """docs/results.md: issue 9's goals, each met or missed by the numbers below it."""
    rows, ranking, winners = [], result["ranking"], result["winners"]

    def best(scope: str) -> str | None:
        scored = [s for s in a.samplers if s in ranking.get(scope, {})]
        return max(scored, key=lambda s: ranking[scope][s]["tau"][0]) if scored else None

    if (entry := ranking.get("all")) and entry["self_tau"]:
        rows.append(("ground truth reproduces itself: seed-against-seed tau >= 0.7 across the space",
                     f"{entry['self_tau'][0]:.2f}", entry["self_tau"][0] >= 0.7))
    for scope, text in (("all", "across the space: supernet tau >= 0.7 and above MACs alone's"),
                        ("window", "inside the window: supernet tau above MACs alone's")):
        if (name := best(scope)) is not None:
            tau, macs = ranking[scope][name]["tau"][0], ranking[scope]["macs"]["tau"][0]
            ceiling = f" (noise ceiling {ranking[scope]['ceiling']['ceiling'][0]:.2f})" if ranking[scope]["ceiling"] \
                else ""
            rows.append((f"{text} (best sampler: {name})", f"{tau:.2f} against {macs:.2f}{ceiling}",
                         tau > macs and (scope == "window" or tau >= 0.7)))
    if set(winners) == {"evolution", "random"}:
        evo, rnd = (statistics.fmean(winners[k]["seeds"]) for k in ("evolution", "random"))
        rows.append(("evolution's retrained winner at least as good as random's", f"{evo:.2f} against {rnd:.2f}",
                     evo >= rnd))
    if not rows:
        return []
    return ["## Goals (issue 9)", "", "| goal | measured | |", "|---|---|---|",
            *(f"| {goal} | {value} | {'met' if ok else '**missed**'} |" for goal, value, ok in rows), ""]


def variants_section(result: dict, a: argparse.Namespace) -> list[str]:
    """docs/results.md: what else moves tau, on the first sampler's supernet."""
    first, ranking = a.samplers[0], result["ranking"]

    def cell(scope: str, name: str) -> str:
        return fmt(ranking[scope][name]["tau"]) if name in ranking.get(scope, {}) else ""

    names = [n for n, _ in rankers(a)[len(a.samplers):] if any(n in e for e in ranking.values())]
    if not names:
        return []
    lines = [f"## What else moves the ranking ({first} supernet)", "",
             f"The same {first} supernet scored another way, or trained twice as long; Kendall tau against the "
             "seeds' mean, with 90 % intervals.", "",
             "| change | tau across the space | tau inside the window |", "|---|---|---|",
             f"| none (as searched: top-1 on all {a.holdout} held-out images, BatchNorm recalibrated) | "
             + " | ".join(cell(scope, first) for scope in ("all", "window")) + " |"]
    for name in names:
        lines.append(f"| {VARIANT_LABELS[name.split('-', 1)[1]]} | "
                     + " | ".join(cell(scope, name) for scope in ("all", "window")) + " |")
    return lines + [""]


def composition_section(comp: dict[str, dict]) -> list[str]:
    """docs/results.md: which cell choices the ground truth rewards, and which each supernet does."""
    if not comp:
        return []
    names = list(next(iter(comp.values())))
    return ["## What each ranking rewards", "",
            "Kendall tau between an architecture's number of cells of each choice and its ground truth (seeds' "
            "mean) or its supernet fitness, over every architecture; 90 % intervals. A supernet ranks well when "
            "its column follows the ground truth's.", "",
            "| cells of | " + " | ".join(n if n == "ground truth" else f"fitness ({n})" for n in names) + " |",
            "|---|" + "---|" * len(names),
            *(f"| {choice} | " + " | ".join(fmt(taus[n]) for n in names) + " |" for choice, taus in comp.items()), ""]


def probe_section(probe: dict | None, a: argparse.Namespace) -> list[str]:
    """docs/results.md: does the ground truth's order hold when the schedule is longer?"""
    if not probe:
        return []
    lines = [f"## The ground truth at a longer schedule: {probe['epochs']} epochs against {a.epochs}", "",
             f"{len(probe['rows'])} of the spread architectures retrained once more (seed {a.seeds[0]}) for "
             f"{probe['epochs']} epochs, same recipe otherwise.", "",
             f"| arch | MACs | {a.epochs} epochs (mean of seeds) | {probe['epochs']} epochs | "
             + " | ".join(f"fitness {s}" for s in a.samplers) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(a.samplers)]
    for r in probe["rows"]:
        lines.append(f"| {r['name']} | {format_macs(r['macs'])} | {r['mean']:.2f} | {r['long']:.2f} | "
                     + " | ".join(f"{r[f'fitness_{s}']:.2f}" if f"fitness_{s}" in r else "" for s in a.samplers)
                     + " |")
    lines += ["", f"Kendall tau against the {probe['epochs']}-epoch order (one seed, few architectures: wide "
              "intervals): " + "; ".join(f"{k} {fmt(v)}" for k, v in probe["tau"].items()) + ".", ""]
    return lines


def after_search_section(after: dict, a: argparse.Namespace) -> list[str]:
    """docs/results.md: finalize's pick against the search's top-1, the tuned recipe against the default."""
    final, tuned, retrains = after["finalize"], after["tune"], after["retrains"]
    if not final:
        return ["## After the search: `finalize` and `tune`", "",
                "Not run at this scale yet (they follow the searches). A 10-class run of this script: "
                "[results-after-search.md](results-after-search.md).", ""]
    lines = [f"## After the search: `finalize` and `tune` (Ray Tune, ASHA, {a.epochs}-epoch trials)", "",
             f"`finalize` retrained the evolution search's top {a.finalize_topk} from scratch on the supernet's "
             f"training images and scored them on its held-out ones; it picked search #{final['search_rank']} "
             f"(`{final['arch'].replace('|', '/')}`).", "",
             "| search # | search fitness | held-out top-1 after retraining | epochs (ASHA) |", "|---:|---:|---:|---:|"]
    for t in final["trials"]:
        lines.append(f"| {t['search_rank']} | {t['search_fitness']:.2f} | {t['score']:.2f} | {t['epochs']} |")
    lines.append("")
    if tuned:
        recipe = ", ".join(f"{k} {v:g}" for k, v in tuned["recipe"].items())
        lines += [f"`tune` tried {tuned['trials']} recipes on that architecture (the default first): best held-out "
                  f"top-1 {tuned['score']:.2f}" + (f" ({tuned['score_at_default_epochs']:.2f} at epoch "
                  f"{tuned['default_epochs']})" if tuned.get("score_at_default_epochs") is not None else "")
                  + f" against the default's {tuned['default_score']:.2f} ({tuned['default_epochs']} epochs); "
                  f"recipe: {recipe}.", ""]
    if retrains:
        lines += ["Each retrained fully (validation top-1, each seed):", "", "| model | val top-1 (each seed) | mean |"
                  " arch |", "|---|---|---:|---|"]
        label = {"top1": "search top-1, default recipe", "finalized": "finalize's pick, default recipe",
                 "tuned": "finalize's pick, tuned recipe"}
        for name, r in retrains.items():
            lines.append(f"| {label[name]} | {', '.join(f'{v:.2f}' for v in r['seeds'])} | "
                         f"{statistics.fmean(r['seeds']):.2f} | `{r['arch'].replace('|', '/')}` |")
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tiny-imagenet-100"))
    parser.add_argument("--classes", type=int, default=30, help="first N classes of a Tiny-ImageNet folder")
    parser.add_argument("--config", default=str(ROOT / "search_spaces" / "tiny_imagenet.yaml"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "study"), help="records (commit them)")
    parser.add_argument("--work", default=str(ROOT / "runs" / "study"), help="run folders and checkpoints")
    parser.add_argument("--results", default=str(ROOT / "docs" / "results.md"))
    parser.add_argument("--spread", type=int, default=12)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--budget", default=None, help="window centre in MACs (default: median of uniform paths)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=5, help="retraining epochs per architecture")
    parser.add_argument("--supernet-epochs", type=int, default=15, help="uniform-path epochs' worth of compute")
    parser.add_argument("--samplers", nargs="+", default=["uniform", "fair", "sandwich", "flops"])
    parser.add_argument("--distill-weight", type=float, default=0.5, help="sandwich: distillation share of the "
                        "students' loss")
    parser.add_argument("--holdout", type=int, default=1500, help="training images held out for fitness")
    parser.add_argument("--gt-holdout", type=int, default=0, help="training images per class moved from the "
                        "retrainings' training set to their validation set (never a fitness image): a less noisy "
                        "ground truth")
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3, help="supernet learning rate")
    parser.add_argument("--retrain-lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="which architectures are drawn")
    parser.add_argument("--finalize-topk", type=int, default=5, help="finalize: top-k of the evolution search")
    parser.add_argument("--tune-samples", type=int, default=6, help="tune: recipes tried (the default first)")
    parser.add_argument("--probe-archs", type=int, default=6, help="spread architectures retrained once more, "
                        "with the first seed, for --probe-epochs (0: no schedule probe)")
    parser.add_argument("--probe-epochs", type=int, default=15)
    parser.add_argument("--est-images-per-s", type=float, default=350, help="for the time estimate")
    parser.add_argument("--report-only", action="store_true", help="write the results from the records, run nothing")
    args = parser.parse_args()
    command = " ".join(["python scripts/study_ranking.py", *(a for a in sys.argv[1:] if a != "--report-only")])
    study = Study(args)
    study.space = SearchSpace.from_yaml(args.config)
    study.data = class_subset(args.data, args.classes, Path(args.work) / f"data-{args.classes}classes")
    study.gt_data = study.data
    if args.gt_holdout:
        train = load_split(study.data, "train", study.space)
        fitness_images = {Path(train.samples[i][0]).name for i in holdout_split(len(train), args.holdout)[1]} \
            if hasattr(train, "samples") else set()
        study.gt_data = gt_subset(study.data, args.gt_holdout, fitness_images,
                                  Path(args.work) / f"data-{args.classes}classes-gt{args.gt_holdout}")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    study.budget = parse_budget(args.budget) if args.budget else \
        statistics.median(study.space.cost_table.macs(study.space.sample(rng)) for _ in range(2000))
    archs = pick_archs(study.space, args.spread, args.window, study.budget, args.seed)
    names = [(f"{g}{i}", a) for g, members in archs.items() for i, a in enumerate(members)]
    probe = probe_archs(archs["spread"], args.probe_archs) if args.probe_epochs != args.epochs else []
    jobs = ([f"supernet-{s}" for s in args.samplers] + [f"supernet-{args.samplers[0]}-x2"]
            + [f"retrain-{n}-seed{s}" for n, _ in names for s in args.seeds]
            + ["search-evolution", "search-random"]
            + [f"retrain-winner-{k}-seed{s}" for k in ("evolution", "random") for s in args.seeds]
            + ["finalize", "tune"] + [f"retrain-{k}-seed{s}" for k in ("top1", "finalized", "tuned")
                                      for s in args.seeds]
            + [f"retrain-{n}-seed{args.seeds[0]}-e{args.probe_epochs}" for n, _ in probe])
    images = len(load_split(study.data, "train", study.space)) - args.holdout
    print(f"{len(jobs)} jobs, {sum(study.record(j) is None for j in jobs)} to run: about "
          f"{estimate_minutes(args, study, jobs, images):.0f} minutes at {args.est_images_per_s:.0f} img/s", flush=True)
    if not args.report_only:
        started = time.time()
        study.fitness(args.samplers[0], [a for _, a in names])
        for name, arch in names:  # both seeds of one architecture first: partial results stay paired
            for seed in args.seeds:
                study.retrain(name, arch, seed)
            print(f"[{(time.time() - started) / 60:.0f} min] {name} done", flush=True)
        for sampler in args.samplers[1:]:
            study.fitness(sampler, [a for _, a in names])
        for strategy in ("evolution", "random"):
            winner = Arch.parse(study.search(strategy))
            for seed in args.seeds:
                study.retrain(f"winner-{strategy}", winner, seed)
        # issue 11: the search's top-1 against finalize's pick of its top-k; the tuned recipe against the default
        work = Path(args.work)
        final = study.after_search("finalize", ["--search", str(work / "search-evolution"), "--topk",
                                                str(args.finalize_topk)])
        study.after_search("tune", ["--arch", str(work / "finalize" / "final.yaml"), "--samples",
                                    str(args.tune_samples)])
        top1 = Arch.parse(study.record("search-evolution")["arch"])
        for seed in args.seeds:  # retrained again here, with the code that runs finalize and tune
            study.retrain("top1", top1, seed)
            study.retrain("finalized", Arch.parse(final["arch"]), seed)
            study.retrain("tuned", Arch.parse(final["arch"]), seed, str(work / "tune" / "recipe.yaml"))
        for variant in VARIANTS:  # what else moves tau
            study.fitness(args.samplers[0], [a for _, a in names], variant)
        for name, arch in probe:  # does the ground truth's order hold at a longer schedule?
            study.retrain(name, arch, args.seeds[0], epochs=args.probe_epochs)
    result = analyse(study, archs, args.seeds)
    result["schedule_probe"] = schedule_probe(study, result, probe)
    atomic_write_text(Path(args.out) / "study.json", json.dumps(result, indent=1))
    write_results(Path(args.results), result, study, command, jobs)
    print(f"wrote {args.results} and {Path(args.out) / 'study.json'}")


if __name__ == "__main__":
    main()
