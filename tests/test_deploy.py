"""Latency tables, latency-constrained search, artifacts that run without psvit-nas, `bench`."""
import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import SPACES
from psvit_nas import Arch, ArchSpec, PSViT, SearchSpace
from psvit_nas.cli import main
from psvit_nas.errors import ConfigError
from psvit_nas.export import save_artifact
from psvit_nas.latency import LatencyTable, build_table
from psvit_nas.search import Search, SearchConfig

DIGITS = SearchSpace.from_yaml(SPACES / "digits.yaml")
TINY = SearchSpace.from_yaml(SPACES / "psvit_2d_tiny.yaml")
ONE_D = SearchSpace.from_dict({"name": "one_d", "image_size": 32, "in_chans": 3, "num_classes": 7, "patch_size": 8,
                               "pooling": "1d", "stages": [{"width": 32, "heads": 2, "cells": 2},
                                                           {"width": 48, "heads": 2, "cells": 2}]})
EVERY_CHOICE = Arch((("share", "lsla", "reattn", "layer"), ("reattn", "lsla", "identity", "share"),
                     ("lsla", "reattn", "layer", "identity")))


def synthetic_table(space: SearchSpace) -> LatencyTable:
    """A table whose cell latencies are deliberately not proportional to MACs (reattn and lsla dear)."""
    extra = {"layer": 1.0, "share": 1.6, "identity": 0.0, "reattn": 2.5, "lsla": 2.2}
    macs = space.cost_table.cell_macs
    cells = [{c: macs[s][c] / 1e8 + extra[c] for c in st.choices} for s, st in enumerate(space.stages)]
    return LatencyTable(space.to_dict(), "cpu", 1, 1, cells, {"stem": 0.5, "pool2": 0.2, "pool3": 0.2, "head": 0.1})


def test_table_structure_reload_and_prediction(tmp_path):
    table = build_table(DIGITS, batch_size=2, threads=1, calibrate=3, validate=4, repeats=3, progress=False)
    assert [set(t) for t in table.cells] == [set(st.choices) for st in DIGITS.stages]
    assert set(table.fixed) == {"stem", "pool2", "pool3", "head"}
    assert all(v > 0 for t in table.cells for v in t.values()) and table.scale > 0
    assert table.batch_size == 2 and table.threads == 1 and table.environment["torch"] == torch.__version__
    stats = table.validation["predicted"]
    rows = table.validation["archs"]
    assert stats["archs"] == 4 and len(rows) == 4
    within = [abs(r["predicted_ms"] / r["measured_ms"] - 1) <= 0.10 for r in rows]
    assert stats["within_10pct"] == pytest.approx(sum(within) / 4)  # the share the rows themselves give
    arch = DIGITS.sample(random.Random(0))
    expected = table.scale * (sum(table.fixed.values()) + sum(table.cells[s][c] for s, st in enumerate(arch.stages)
                                                              for c in st))
    assert table.predict(arch) == pytest.approx(expected)
    table.save(tmp_path / "lut.json")
    again = LatencyTable.load(tmp_path / "lut.json")
    assert again.predict(arch) == pytest.approx(table.predict(arch)) and again.source == str(tmp_path / "lut.json")
    again.check_space(DIGITS)
    with pytest.raises(ConfigError, match="measured for space 'digits'"):
        again.check_space(TINY)
    (tmp_path / "bad.json").write_text(json.dumps({**json.loads((tmp_path / "lut.json").read_text()), "cells": [{}]}))
    with pytest.raises(ConfigError, match="bad.json: cells: not a psvit-nas latency table"):
        LatencyTable.load(tmp_path / "bad.json")


def test_latency_budget_holds_for_every_individual_of_every_strategy(tmp_path):
    """DESIGN.md invariant 6 for latency, with a MACs floor too, so that both limits bind."""
    table = synthetic_table(TINY)
    fastest, slowest = table.limit().extremes(TINY)
    budget = fastest + 0.3 * (slowest - fastest)
    seen = []
    for strategy in ("evolution", "random", "nsga2"):
        cfg = SearchConfig(strategy=strategy, population=16, generations=3, topk=4, max_latency_ms=budget,
                           min_macs=0.5e9, mutation_prob=0.5)
        score = lambda archs: [sum(c == "reattn" for s in a.stages for c in s) for a in archs]  # noqa: E731
        search = Search(TINY, cfg, score, tmp_path / strategy, latency=table,
                        on_generation=lambda g: seen.extend(search.state.population))
        history = search.run()
        assert all(r.latency_ms <= budget + 1e-9 and r.macs >= 0.5e9 for r in history)
        assert all(r.latency_ms == pytest.approx(table.predict(Arch.parse(r.arch))) for r in history)
    assert all(table.predict(Arch.parse(a)) <= budget + 1e-9 for a in seen)
    # NSGA-II without a latency budget trades fitness against predicted latency: its front is sorted by latency
    cfg = SearchConfig(strategy="nsga2", population=16, generations=3, topk=4, seed=1)
    search = Search(TINY, cfg, lambda archs: [TINY.cost_table.macs(a) / 1e9 for a in archs], tmp_path / "front",
                    latency=table)
    search.run()
    front = search.pareto_front()
    assert [r.latency_ms for r in front] == sorted(r.latency_ms for r in front) and len(front) >= 2
    assert all(a.fitness < b.fitness for a, b in zip(front, front[1:]))  # each slower point is fitter


def test_evolve_with_latency_budget_and_bad_input(tmp_path, capsys):
    sn = tmp_path / "sn"
    assert main(["train-supernet", "--config", str(SPACES / "digits.yaml"), "--out", str(sn), "--epochs", "1",
                 "--search-holdout", "100"]) == 0
    lut = tmp_path / "lut.json"
    assert main(["latency", "--config", str(SPACES / "digits.yaml"), "--out", str(lut), "--threads", "1",
                 "--calibrate", "2", "--validate", "2", "--repeats", "3"]) == 0
    assert "within +-10 %" in capsys.readouterr().out
    table = LatencyTable.load(lut)
    fastest, slowest = table.limit().extremes(DIGITS)
    budget = fastest + 0.4 * (slowest - fastest)
    out = tmp_path / "search"
    assert main(["evolve", "--supernet", str(sn / "last.pt"), "--latency", f"{budget:.6f}ms", "--latency-table",
                 str(lut), "--population", "6", "--generations", "2", "--topk", "2", "--out", str(out)]) == 0
    best = ArchSpec.from_yaml(out / "best.yaml")
    assert best.metrics["latency_ms"] <= budget and best.metrics["latency_table"]["path"] == str(lut)
    assert best.metrics["budget"]["max_latency_ms"] == pytest.approx(budget, rel=1e-6)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert all(r["latency_ms"] <= budget for r in history)
    capsys.readouterr()
    base = ["evolve", "--supernet", str(sn / "last.pt"), "--out", str(tmp_path / "bad")]
    other = tmp_path / "other.json"
    synthetic_table(TINY).save(other)
    cases = [(["--latency", "25xs", "--latency-table", str(lut)], "--latency: cannot parse latency '25xs'"),
             (["--latency=-3ms", "--latency-table", str(lut)], "--latency: cannot parse latency '-3ms'"),
             (["--latency", "5ms"], "--latency-table: a latency budget needs a table"),
             (["--latency", f"{fastest / 2:.6f}ms", "--latency-table", str(lut)], "--latency: budget"),
             (["--latency", "5ms", "--latency-table", str(other)], "other.json: space: table measured for space "
                                                                  "'psvit_2d_tiny'"),
             ([], "--flops/--latency: give a MACs budget")]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bad" / "best.yaml").exists()


RUNNER = """
import importlib.abc, sys
class NoPsvit(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "psvit_nas":
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, NoPsvit())
import numpy as np
kind, path, inp, out = sys.argv[1:]
x = np.load(inp)
if kind == "onnx":
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    y = session.run(None, {session.get_inputs()[0].name: x})[0]
else:
    import torch
    y = torch.export.load(path).module()(torch.from_numpy(x)).detach().numpy()
np.save(out, y)
assert not any(m.startswith("psvit_nas") for m in sys.modules)
"""


@pytest.mark.parametrize("space,arch", [(DIGITS, EVERY_CHOICE),
                                        (ONE_D, Arch((("share", "reattn"), ("lsla", "layer"))))])
@pytest.mark.slow
def test_onnx_and_pt2_give_the_model_logits_without_psvit_nas(tmp_path, space, arch):
    """DESIGN.md invariant 8, for every cell choice, 2-D and 1-D pooling, at a batch size not exported with."""
    model = PSViT.from_spec(space.spec(arch)).eval()
    with torch.no_grad():  # non-zero outer LSLA biases and BatchNorm statistics, so that every part counts
        for name, p in model.named_parameters():
            if "outer_bias" in name or "norm" in name:
                p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(5, space.in_chans, space.image_size, space.image_size)
    np.save(tmp_path / "x.npy", x.numpy())
    with torch.no_grad():
        expected = model(x).numpy()
    (tmp_path / "run.py").write_text(RUNNER)
    for fmt in ("onnx", "pt2"):
        save_artifact(model, tmp_path / f"model.{fmt}", fmt)
        subprocess.run([sys.executable, "run.py", fmt, f"model.{fmt}", "x.npy", f"{fmt}.npy"], cwd=tmp_path,
                       check=True, env={"PATH": "/usr/bin:/bin"})
        got = np.load(tmp_path / f"{fmt}.npy")
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4, fmt


@pytest.mark.slow
def test_export_command_formats_and_bench(tmp_path, capsys):
    spec_path = tmp_path / "arch.yaml"
    DIGITS.spec(EVERY_CHOICE).to_yaml(spec_path)
    torch.save(PSViT.from_spec(DIGITS.spec(EVERY_CHOICE)).state_dict(), tmp_path / "w.pt")
    for name in ("m.pt", "m.onnx", "m.pt2"):
        assert main(["export", "--arch", str(spec_path), "--weights", str(tmp_path / "w.pt"), "--out",
                     str(tmp_path / name)]) == 0
    out = capsys.readouterr().out
    assert "(state_dict)" in out and "(onnx)" in out and "(pt2)" in out
    import onnx

    meta = {p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert meta["psvit_nas.arch"] == str(EVERY_CHOICE)
    lut = tmp_path / "lut.json"
    synthetic_table(DIGITS).save(lut)
    assert main(["bench", "--arch", str(spec_path), "--weights", str(tmp_path / "m.pt"), "--batch-size", "4",
                 "--repeats", "3", "--latency-table", str(lut)]) == 0
    assert main(["bench", "--arch", str(spec_path), "--onnx", str(tmp_path / "m.onnx"), "--repeats", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "per batch of 4" in lines[0] and "images/s" in lines[0] and "predicted by" in lines[1]
    assert "ONNX Runtime" in lines[2]


def test_safetensors_export_carries_its_spec_and_loads_back_without_pickle(tmp_path, capsys):
    from safetensors.torch import load_file

    from psvit_nas import ArchSpec
    from psvit_nas.export import read_safetensors

    spec_path = tmp_path / "arch.yaml"
    DIGITS.spec(EVERY_CHOICE).to_yaml(spec_path)
    model = PSViT.from_spec(DIGITS.spec(EVERY_CHOICE)).eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    assert main(["export", "--arch", str(spec_path), "--weights", str(tmp_path / "w.pt"), "--out",
                 str(tmp_path / "m.safetensors")]) == 0
    said = capsys.readouterr().out
    assert "(safetensors)" in said and "timm.create_model('psvit_nas', pretrained=True" in said
    import timm

    import psvit_nas.timm  # noqa: F401  (registers psvit_nas with timm, as the line printed says)
    loaded = timm.create_model("psvit_nas", pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(tmp_path / "m.safetensors"))).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    plain = load_file(tmp_path / "m.safetensors")  # any safetensors reader, no psvit-nas
    assert all(torch.equal(plain[k], v) for k, v in model.state_dict().items())
    _, spec = read_safetensors(tmp_path / "m.safetensors")
    assert ArchSpec.from_dict(spec).arch == EVERY_CHOICE
    assert main(["eval", "--arch", str(spec_path), "--weights", str(tmp_path / "m.safetensors"), "--data",
                 "digits"]) == 0
    assert "top-1" in capsys.readouterr().out
