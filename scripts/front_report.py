"""The search's front against the all-`layer` family (issue 32): a table, the goal's verdict and a plot, from a
study's retraining records.

    python scripts/front_report.py docs/study-pareto/records --space search_spaces/tiny_imagenet.yaml \
        --delivered 5M=docs/front/delivered-5M.yaml 8M=... 13M=... --plot docs/results-front.png

A delivered model's records are `retrain-front_<BUDGET>-seed*.json`, the family's `retrain-layers<D>-seed*.json`.
SEs use the variance between seeds pooled over every model (2 to 4 seeds each are too few for their own);
intervals are 90 % t intervals on that pooled variance.
"""
import argparse
import json
import math
import sys
from pathlib import Path

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from psvit_nas.baselines import layer_family  # noqa: E402
from psvit_nas.io import new_figure, save_figure  # noqa: E402
from psvit_nas.space import ArchSpec, SearchSpace, format_macs, parse_budget  # noqa: E402


def seeds_of(records: Path, name: str) -> list[float]:
    return [json.loads(p.read_text())["val_top1"] for p in sorted(records.glob(f"retrain-{name}-seed*.json"))]


def pooled_variance(models: dict[str, dict]) -> tuple[float, int]:
    """The seed variance pooled over models with two or more seeds, and its degrees of freedom."""
    ss = sum(sum((x - m["mean"]) ** 2 for x in m["top1"]) for m in models.values())
    dof = sum(len(m["top1"]) - 1 for m in models.values())
    return ss / dof, dof


def collect(records: Path, space: SearchSpace, delivered: dict[str, str]) -> dict[str, dict]:
    models = {}
    for name, arch in layer_family(space, range(1, 7)).items():
        models[name] = {"kind": "family", "macs": space.cost_table.macs(arch), "arch": str(arch)}
    for budget, spec in delivered.items():
        arch = ArchSpec.from_yaml(spec).arch
        models[f"front_{budget}"] = {"kind": "delivered", "budget": parse_budget(budget),
                                     "macs": space.cost_table.macs(arch), "arch": str(arch)}
    for name, m in list(models.items()):
        m["top1"] = seeds_of(records, name)
        if not m["top1"]:
            del models[name]
            continue
        m["mean"] = sum(m["top1"]) / len(m["top1"])
    return models


def verdicts(models: dict[str, dict], var: float) -> list[dict]:
    """Per budget: the delivered model against the best family member within it."""
    out = []
    for name, d in sorted(((n, m) for n, m in models.items() if m["kind"] == "delivered"),
                          key=lambda item: item[1]["budget"]):
        family = [(n, m) for n, m in models.items() if m["kind"] == "family" and m["macs"] <= d["budget"]]
        if not family:
            continue
        best_name, best = max(family, key=lambda item: item[1]["mean"])
        se = math.sqrt(var / len(d["top1"]) + var / len(best["top1"]))
        diff = d["mean"] - best["mean"]
        out.append({"budget": d["budget"], "delivered": name, "best": best_name, "diff": diff, "se": se,
                    "macs_ratio": d["macs"] / best["macs"],
                    "at_least": diff >= 0 or abs(diff) <= se,
                    "wins": diff > 2 * se or (abs(diff) <= se and d["macs"] <= 0.6 * best["macs"])})
    return out


def table(models: dict[str, dict], var: float, dof: int) -> str:
    t = stats.t.ppf(0.95, dof)
    lines = ["| model | MACs | seeds | top-1, each seed | mean [90 % interval] |", "|---|---:|---:|---|---|"]
    for name, m in sorted(models.items(), key=lambda item: item[1]["macs"]):
        half = t * math.sqrt(var / len(m["top1"]))
        label = f"delivered at {format_macs(m['budget'])}" if m["kind"] == "delivered" else f"family `{name}`"
        lines.append(f"| {label} | {format_macs(m['macs'])} | {len(m['top1'])} | "
                     f"{', '.join(f'{x:.2f}' for x in m['top1'])} | {m['mean']:.2f} "
                     f"[{m['mean'] - half:.2f}, {m['mean'] + half:.2f}] |")
    return "\n".join(lines)


def plot(models: dict[str, dict], var: float, dof: int, path: Path) -> None:
    t = stats.t.ppf(0.95, dof)
    fig, ax = new_figure(7, 4.5)
    for kind, style, label in (("family", "-o", "all-layer family (layersD)"), ("delivered", "s", "delivered")):
        part = sorted((m for m in models.values() if m["kind"] == kind), key=lambda m: m["macs"])
        ax.errorbar([m["macs"] / 1e6 for m in part], [m["mean"] for m in part],
                    yerr=[t * math.sqrt(var / len(m["top1"])) for m in part], fmt=style, capsize=3, label=label)
    for name, m in models.items():
        short = name.replace("front_", "at ") if m["kind"] == "delivered" else name
        ax.annotate(short, (m["macs"] / 1e6, m["mean"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("MACs (M)")
    ax.set_ylabel("top-1 (%), mean of seeds, 90 % interval")
    ax.set_title("the search's delivered models against the all-layer family")
    ax.legend()
    save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("records", type=Path)
    p.add_argument("--space", required=True)
    p.add_argument("--delivered", nargs="+", required=True, metavar="BUDGET=SPEC")
    p.add_argument("--plot", type=Path)
    args = p.parse_args()
    space = SearchSpace.from_yaml(args.space)
    models = collect(args.records, space, dict(d.split("=", 1) for d in args.delivered))
    var, dof = pooled_variance(models)
    print(table(models, var, dof))
    print(f"\npooled seed variance {var:.2f} points² ({dof} degrees of freedom)\n")
    for v in verdicts(models, var):
        print(f"- {format_macs(v['budget'])}: {v['delivered']} − best family within ({v['best']}) = "
              f"{v['diff']:+.2f} ± {v['se']:.2f} (SE) at {v['macs_ratio']:.2f}× its MACs: "
              f"{'at least as accurate' if v['at_least'] else 'below'}"
              f"{'; wins (> 2 SE, or within 1 SE at ≤ 0.6× MACs)' if v['wins'] else ''}")
    if args.plot:
        plot(models, var, dof, args.plot)


if __name__ == "__main__":
    main()
