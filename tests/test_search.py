import json
import random

import pytest
import torch

from conftest import SPACES
from psvit_nas import ArchSpec, SearchSpace
from psvit_nas.cli import main
from psvit_nas.limits import budget, fits
from psvit_nas.rankers.debiased import SizeTrend
from psvit_nas.rankers import Evaluator, FitnessSet
from psvit_nas.search import STRATEGIES, Search, SearchConfig, evolve
from psvit_nas.search.strategies import Evaluated
from psvit_nas.train import load_supernet

DIGITS = SearchSpace.from_yaml(SPACES / "digits.yaml")
TINY = SearchSpace.from_yaml(SPACES / "psvit_2d_tiny.yaml")


def _target_score(space, target):
    """Synthetic fitness with a known optimum: the share of cells that match `target`."""
    flat = [c for stage in target.stages for c in stage]

    def score(archs):
        return [sum(a == b for a, b in zip([c for s in arch.stages for c in s], flat)) / len(flat)
                for arch in archs]
    return score


def test_every_individual_satisfies_the_budget(tmp_path):
    """DESIGN.md invariant 6, with a window tight enough that repair is needed."""
    low, high = 1.0e9, 1.1e9
    populations = []
    for strategy in ("evolution", "random", "nsga2"):
        cfg = SearchConfig(strategy=strategy, population=20, generations=4, topk=5, max_macs=high, min_macs=low,
                           mutation_prob=0.5)
        search = Search(TINY, cfg, _target_score(TINY, TINY.sample(random.Random(1))), tmp_path / strategy,
                        on_generation=lambda g: populations.append(list(search.state.population)))
        history = search.run()
        assert len(history) >= cfg.population
        assert all(low <= r.macs <= high for r in history)
    assert all(low <= TINY.cost_table.macs(TINY.validate(__import__("psvit_nas").Arch.parse(a))) <= high
               for pop in populations for a in pop)


def test_a_strategy_makes_its_candidates_inside_the_budget_and_owns_its_random_state():
    """Strategies see evaluations only as an `Evaluated`; their state_dict round-trips through JSON."""
    cfg = SearchConfig(population=8, generations=2, topk=2, max_macs=1.0e6, seed=3)
    limits = cfg.budget(DIGITS)
    evolution = STRATEGIES["evolution"](DIGITS, cfg, limits)
    first = evolution.initial(Evaluated({}, DIGITS.cost_table.macs))
    twin = STRATEGIES["evolution"](DIGITS, cfg, limits)
    twin.load_state_dict(json.loads(json.dumps(evolution.state_dict())))
    assert [evolution.sample() for _ in range(5)] == [twin.sample() for _ in range(5)]
    assert len(set(first)) == cfg.population and all(fits(limits, a) for a in first)
    scored = Evaluated({str(a): float(i) for i, a in enumerate(first)}, DIGITS.cost_table.macs)
    children = evolution.propose(scored, first)
    assert children[:2] == [first[-1], first[-2]]  # the top-k by fitness are kept as parents
    assert len(children) == cfg.population and all(fits(limits, a) for a in children)
    assert not set(children[2:]) & set(first)  # new candidates only


def test_evolution_beats_random_search_on_a_known_optimum(tmp_path):
    wins = 0
    for seed in range(3):
        target = TINY.sample(random.Random(100 + seed), budget(TINY, 1.3e9))
        best = {}
        for strategy in ("evolution", "random"):
            cfg = SearchConfig(strategy=strategy, population=30, generations=8, topk=8, max_macs=1.3e9, seed=seed)
            search = Search(TINY, cfg, _target_score(TINY, target), tmp_path / f"{strategy}{seed}")
            history = search.run()
            # random search draws every candidate anew; evolution scores a repeated child once (its cache)
            assert len(history) == cfg.evaluations if strategy == "random" else \
                cfg.population <= len(history) <= cfg.evaluations
            best[strategy] = search.best.fitness
        wins += best["evolution"] > best["random"]
    assert wins == 3


def test_search_resumed_after_a_kill_matches_an_uninterrupted_one(tmp_path, supernet):
    """DESIGN.md invariant 5, on a real supernet."""
    net, checkpoint = load_supernet(supernet)
    fitness = FitnessSet("digits", "data", 200, 100, 2, 64)
    cfg = SearchConfig(population=8, generations=4, topk=3, max_macs=1.0e6, seed=5)
    full = evolve(supernet, cfg, fitness, tmp_path / "full")

    def killer(generation):
        if generation == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evolve(supernet, cfg, fitness, tmp_path / "cut", on_generation=killer)
    assert not (tmp_path / "cut" / "best.yaml").exists()
    resumed = evolve(supernet, cfg, fitness, tmp_path / "cut", resume=True)
    assert [r.arch for r in resumed.state.history] == [r.arch for r in full.state.history]
    assert resumed.best == full.best
    assert ArchSpec.from_yaml(tmp_path / "cut" / "best.yaml").arch == ArchSpec.from_yaml(
        tmp_path / "full" / "best.yaml").arch
    for name in ("progress.png", "pareto.png", "history.jsonl", "cache.jsonl", "config.yaml"):
        assert (tmp_path / "full" / name).stat().st_size > 0
    lines = (tmp_path / "full" / "history.jsonl").read_text().splitlines()
    assert len(lines) == len(full.state.history) and "fitness" in json.loads(lines[0])


@pytest.mark.slow
def test_ray_backend_matches_local_and_survives_a_killed_actor(tmp_path, supernet, shared_ray):
    from psvit_nas.search.backends import RayBackend

    net, _ = load_supernet(supernet)
    fitness = FitnessSet("digits", "data", 200, 100, 2, 64)
    batches, calib = fitness.load(DIGITS)
    archs = [DIGITS.sample(random.Random(i)) for i in range(6)]
    local = [Evaluator(net, batches, calib)(a) for a in archs]
    backend = RayBackend(net, batches, calib, workers=2)
    killed = []

    def kill_once(arch, value):
        if not killed:
            killed.append(backend.actors[1])
            shared_ray.kill(backend.actors[1])

    assert backend.map(archs, kill_once) == pytest.approx(local, abs=1e-9)
    assert killed and killed[0] not in backend.actors
    backend.close()
    cfg = SearchConfig(population=6, generations=2, topk=2, max_macs=1.0e6, seed=1)
    on_ray = evolve(supernet, cfg, fitness, tmp_path / "ray", backend="ray", workers=2)
    on_cpu = evolve(supernet, cfg, fitness, tmp_path / "local")
    assert [(r.arch, r.fitness) for r in on_ray.state.history] == [(r.arch, r.fitness) for r in on_cpu.state.history]


def test_bn_recalibration_and_bn_batches_zero_keeping_the_supernets_statistics(supernet):
    from psvit_nas import Arch
    from psvit_nas.rankers import inherited_model

    net, _ = load_supernet(supernet)
    arch = Arch(tuple(("reattn",) * stage.cells for stage in DIGITS.stages))
    supernet_stats = {k: v for k, v in net.path_state_dict(arch).items() if k.endswith("running_mean")}
    assert supernet_stats
    for bn_batches, kept in ((0, True), (2, False)):
        _, calib = FitnessSet("digits", "data", 200, 100, bn_batches, 64).load(DIGITS)
        model = inherited_model(net, arch, lambda: calib).state_dict()
        same = [torch.equal(model[k], v) for k, v in supernet_stats.items()]
        assert all(same) if kept else not any(same)


def test_export_reproduces_the_search_fitness(tmp_path, supernet, capsys):
    out = tmp_path / "search"
    assert main(["evolve", "--supernet", supernet, "--flops", "0.9M", "--out", str(out), "--population", "6",
                 "--generations", "2", "--topk", "2", "--search-val-size", "120"]) == 0
    best = ArchSpec.from_yaml(out / "best.yaml")
    assert best.metrics["macs"] <= 0.9e6 and "command" in best.metrics
    assert main(["export", "--supernet", supernet, "--arch", str(out / "best.yaml"), "--out",
                 str(tmp_path / "model.pt")]) == 0
    from psvit_nas import PSViT

    model = PSViT.from_spec(best)
    model.load_state_dict(torch.load(tmp_path / "model.pt"))
    capsys.readouterr()
    assert main(["eval", "--arch", str(out / "best.yaml"), "--weights", str(tmp_path / "model.pt"),
                 "--split", "search", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 120 and result["top1"] == pytest.approx(best.metrics["supernet_top1"])
    trend = SizeTrend(**best.metrics["size_trend"])  # the default ranker took the supernet's size trend out
    assert best.metrics["fitness"] == pytest.approx(trend(best.metrics["macs"], result["top1"]))


def test_search_bad_inputs(tmp_path, supernet, capsys):
    code = main(["evolve", "--supernet", supernet, "--flops", "10K", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and "smallest" in err and "--flops" in err and not (tmp_path / "s" / "best.yaml").exists()
    code = main(["evolve", "--supernet", supernet, "--flops", "1M", "--bn-batches", "-1", "--out", str(tmp_path / "s")])
    assert code == 2 and "--bn-batches" in capsys.readouterr().err and not (tmp_path / "s" / "best.yaml").exists()
    code = main(["evolve", "--supernet", str(tmp_path / "nope.pt"), "--flops", "1M", "--out", str(tmp_path / "s")])
    assert code == 2 and "checkpoint not found" in capsys.readouterr().err
    other = tmp_path / "other.yaml"
    assert main(["sample", "--config", str(SPACES / "tiny_imagenet.yaml"), "--out", str(other)]) == 0
    capsys.readouterr()
    code = main(["export", "--supernet", supernet, "--arch", str(other), "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "space" in err and str(other) in err and not (tmp_path / "m.pt").exists()


def test_resume_refuses_other_settings_or_another_space(tmp_path):
    cfg = SearchConfig(population=6, generations=2, topk=2, max_macs=1.0e6)
    score = _target_score(DIGITS, DIGITS.sample(random.Random(0)))
    Search(DIGITS, cfg, score, tmp_path).run()
    from psvit_nas import ConfigError

    with pytest.raises(ConfigError, match="population"):
        Search(DIGITS, SearchConfig(population=8, generations=2, topk=2, max_macs=1.0e6), score, tmp_path).run(True)
    tiny = SearchSpace.from_yaml(SPACES / "tiny_imagenet.yaml")
    with pytest.raises(ConfigError, match="space"):
        Search(tiny, SearchConfig(population=6, generations=2, topk=2, max_macs=3.0e7), score, tmp_path).run(True)
