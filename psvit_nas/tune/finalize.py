"""`finalize`: retrain the search's k best distinct architectures briefly and keep the one that trains best.

Two schemes, both Ray Tune experiments scored on the search's held-out training images:
- ASHA (default): every architecture starts the full schedule; ASHA stops the worse half at its rungs,
  reading runs whose learning rate has not annealed yet.
- complete-schedule successive halving (`rungs`): each rung retrains its survivors from scratch with a
  schedule that anneals to the rung's own end, and the better half goes on to the next, longer rung.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..space import Arch, ArchSpec, SearchSpace, format_macs
from .trials import TrialSetup, plot_curves, run_experiment, write_table


def top_archs(search: str | Path, k: int, max_macs: float | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The search folder's config and its `k` fittest distinct architectures (history records, best first),
    of those within `max_macs` when given: one multi-objective search then feeds a finalize per budget."""
    search = Path(search)
    history, config = search / "history.jsonl", search / "config.yaml"
    if not history.is_file() or not config.is_file() or not history.read_text().strip():
        raise ConfigError(str(history), None, "no search history here; run psvit-nas evolve --out "
                          f"{search} first")
    records: dict[str, dict[str, Any]] = {}
    for line in history.read_text().splitlines():
        r = json.loads(line)
        if r["arch"] not in records or r["fitness"] > records[r["arch"]]["fitness"]:
            records[r["arch"]] = r
    if max_macs is not None:
        records = {a: r for a, r in records.items() if r["macs"] <= max_macs}
        if not records:
            raise ConfigError(str(history), "--flops", f"no architecture the search evaluated fits "
                              f"{format_macs(max_macs)} MACs")
    if not 0 < k <= len(records):
        raise ConfigError(None, "--topk", f"expected 1..{len(records)}, the distinct architectures the search in "
                          f"{search} evaluated{' within --flops' if max_macs is not None else ''}; got {k}")
    best = sorted(records.values(), key=lambda r: (-r["fitness"], r["macs"]))[:k]
    return yaml.safe_load(config.read_text()), best


def check_rungs(rungs: tuple[int, ...], epochs: int) -> None:
    """Rungs are rising schedules shorter than the full one (`epochs`)."""
    if any(r < 1 for r in rungs) or list(rungs) != sorted(set(rungs)) or (rungs and rungs[-1] >= epochs):
        raise ConfigError(None, "--rungs", f"expected rising epochs, each 1..{epochs - 1} (below --epochs "
                          f"{epochs}); got {' '.join(map(str, rungs))}")


def successive_halving(specs: list[dict[str, Any]], recipe: dict[str, Any], setup: TrialSetup,
                       rungs: tuple[int, ...], out: Path, resume: bool, ray_address: str | None,
                       columns: dict[str, str]) -> list[dict[str, Any]]:
    """Retrain `specs` rung by rung, complete schedules of `rungs` epochs and then `setup.epochs`, each in
    OUT/rung-E; the better half (rounded up) of each rung goes on. Every rung's rows, the last rung first."""
    from ray import tune

    check_rungs(rungs, setup.epochs)
    survivors, rows = specs, []
    for epochs in (*rungs, setup.epochs):
        folder = out / f"rung-{epochs}"
        rung = replace(setup, epochs=epochs, grace_epochs=epochs)  # ASHA stops nothing inside a rung
        ranked = run_experiment({"spec": tune.grid_search(survivors), **recipe}, 1, rung, folder, resume,
                                ray_address, columns=columns)
        for row in ranked:
            row.update(rung=epochs, folder=str(folder.resolve() / "trials" / row["trial"]))
        rows = ranked + rows
        keep = {row["arch"] for row in ranked[: math.ceil(len(ranked) / 2)]}
        survivors = [s for s in survivors if str(ArchSpec.from_dict(s).arch) in keep]
    return rows


def finalize(search: str | Path, topk: int, setup_args: dict[str, Any], out: str | Path,
             recipe: dict[str, Any] | None = None, resume: bool = False, ray_address: str | None = None,
             rungs: tuple[int, ...] = (), max_macs: float | None = None) -> ArchSpec:
    """Retrain the top-k as Ray Tune trials, under ASHA or (`rungs`) complete-schedule successive halving,
    scored on the search's held-out training images (the top-k within `max_macs` when given); write final.yaml (the winner, its scores and the
    comparison), trials.csv and learning_curves.png."""
    from ray import tune

    config, best = top_archs(search, topk, max_macs)
    space = SearchSpace.from_dict(config["space"], source=str(Path(search) / "config.yaml"))
    specs = [space.spec(Arch.parse(r["arch"]), search_rank=i, search_fitness=r["fitness"], macs=r["macs"],
                        params=r["params"]).to_dict() for i, r in enumerate(best, 1)]
    setup = TrialSetup(fitness=config["fitness_set"], **setup_args)
    out = Path(out)
    columns = {"spec/search_rank": "search #", "spec/search_fitness": "fitness"}
    if rungs:
        rows = successive_halving(specs, recipe or {}, setup, rungs, out, resume, ray_address, columns)
    else:
        rows = run_experiment({"spec": tune.grid_search(specs), **(recipe or {})}, 1, setup, out, resume,
                              ray_address, columns=columns)
        for row in rows:
            row.update(rung=setup.epochs, folder=str(out.resolve() / "trials" / row["trial"]))
    fitness = {r["arch"]: r for r in best}
    for row in rows:
        row["label"] = f"{row['rung']} ep: search #{row['search_rank']} ({row['arch']})" if rungs else \
            f"search #{row['search_rank']} ({row['arch']})"
        row["search_fitness"] = fitness[row["arch"]]["fitness"]
    winner = rows[0]
    table = [{"arch": r["arch"], "search_rank": r["search_rank"], "search_fitness": r["search_fitness"],
              "score": r["score"], "epochs": r["epochs"], "completed": r["completed"], "rung": r["rung"]}
             for r in rows]
    record = fitness[winner["arch"]]
    spec = space.spec(Arch.parse(winner["arch"]), fitness=record["fitness"], macs=record["macs"],
                      params=record["params"], **({"latency_ms": record["latency_ms"]} if record.get("latency_ms")
                                                  else {}),
                      finalize={"score": winner["score"], "epochs": setup.epochs, "search_rank": winner["search_rank"],
                                "scheme": f"halving {' '.join(map(str, rungs))}" if rungs else "asha",
                                "retrainings": sum(r["epochs"] for r in rows) / setup.epochs,
                                "weights": str(Path(winner["folder"]) / "last.pt"),
                                "recipe": recipe or {}, "trials": table},
                      fitness_set=setup.fitness, search=str(search), command=" ".join(sys.argv))
    spec.to_yaml(out / "final.yaml")
    write_table(rows, out / "trials.csv", ["search_rank", "search_fitness", "rung", *sorted(recipe or {})])
    plot_curves(rows, out / "learning_curves.png", f"finalize: top-{topk} of {search}, {setup.epochs} epochs")
    _print_table(rows, record["macs"], out)
    return spec


def _print_table(rows: list[dict[str, Any]], macs: float, out: Path) -> None:
    print(f"{'':<3}{'search #':>9}{'fitness':>9}{'held-out top-1':>16}{'epochs':>8}  arch")
    for i, r in enumerate(rows):
        print(f"{'*' if i == 0 else '':<3}{r['search_rank']:>9}{r['search_fitness']:>9.2f}{r['score']:>16.2f}"
              f"{r['epochs']:>8}  {r['arch']}")
    print(f"winner: search #{rows[0]['search_rank']}, {format_macs(macs)} MACs -> {out / 'final.yaml'}")
