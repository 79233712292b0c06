import json
import subprocess
import sys

import pytest
import yaml

from conftest import SPACES
from psvit_nas import ArchSpec, count_cost
from psvit_nas.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_space_prints_stages_and_ranges(capsys):
    code, out, _ = run(capsys, "space", "--config", str(SPACES / "psvit_2d_tiny.yaml"))
    assert code == 0
    assert "14x14" in out and "7x7" in out and "4x4" in out and "3,814,697,265,625" in out
    code, out, _ = run(capsys, "space", "--config", str(SPACES / "psvit_1d_tiny.yaml"), "--json")
    info = json.loads(out)
    assert info["stages"][0]["tokens"] == "196+cls" and info["macs"]["min"] < 1.3e9 < info["macs"]["max"]


def test_sample_then_flops(capsys, tmp_path):
    out_file = tmp_path / "arch.yaml"
    code, _, _ = run(capsys, "sample", "--config", str(SPACES / "psvit_2d_tiny.yaml"), "--max-flops", "1.3G",
                     "--seed", "0", "--out", str(out_file))
    assert code == 0
    spec = ArchSpec.from_yaml(out_file)
    assert spec.metrics["macs"] == count_cost(spec).macs <= 1.3e9
    code, out, _ = run(capsys, "flops", str(out_file), "--json")
    assert json.loads(out)["macs"] == spec.metrics["macs"]
    code, out, _ = run(capsys, "flops", str(out_file))
    assert code == 0 and "stage3" in out and "total" in out


def _space_with(tmp_path, **changes):
    data = yaml.safe_load((SPACES / "digits.yaml").read_text())
    stage_changes = changes.pop("stage0", {})
    data.update(changes)
    data["stages"][0].update(stage_changes)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("changes,field,words", [
    ({"stage0": {"choices": ["layer", "convnext"]}}, "stages[0].choices", "convnext"),
    ({"stage0": {"heads": 5}}, "stages[0].heads", "not divisible"),
    ({"patch_size": 3}, "patch_size", "not divisible"),
    ({"pooling": "3d"}, "pooling", "expected one of"),
    ({"depth": 3}, "depth", "unknown field"),
])
def test_bad_space_files(capsys, tmp_path, changes, field, words):
    path = _space_with(tmp_path, **changes)
    code, out, err = run(capsys, "space", "--config", path)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and path in err and field in err and words in err


def test_bad_spec_files(capsys, tmp_path):
    spec = yaml.safe_load((SPACES / "deit_tiny.yaml").read_text())
    for arch, field in [([["layer"] * 11], "arch[0]"), ([["layer"] * 11 + ["mystery"]], "arch[0][11]")]:
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump({**spec, "arch": arch}))
        code, _, err = run(capsys, "flops", str(path))
        assert code == 2 and str(path) in err and field in err and len(err.strip().splitlines()) == 1


def test_bad_budgets(capsys, tmp_path):
    config = str(SPACES / "psvit_2d_tiny.yaml")
    out_file = tmp_path / "a.yaml"
    code, _, err = run(capsys, "sample", "--config", config, "--max-flops", "1.3X", "--out", str(out_file))
    assert code == 2 and "--max-flops" in err and "1.3X" in err
    code, _, err = run(capsys, "sample", "--config", config, "--max-flops", "10M", "--out", str(out_file))
    assert code == 2 and "smallest" in err and "80.1M" in err and config in err
    assert not out_file.exists()


def test_console_script_reports_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "psvit_nas.cli", "space", "--config", str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "file not found" in proc.stderr


def test_version_names_the_installed_release(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"psvit-nas {version('psvit-nas')}"
