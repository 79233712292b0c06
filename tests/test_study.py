import json
import subprocess
import sys

from conftest import ROOT


def test_study_script_runs_end_to_end_at_a_tiny_setting(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "study_ranking.py"), "--data", "digits", "--config",
         str(ROOT / "search_spaces" / "digits.yaml"), "--archs", "3", "--epochs", "1", "--supernet-epochs", "1",
         "--population", "4", "--generations", "2", "--holdout", "150", "--batch-size", "128", "--workers", "0",
         "--out", str(tmp_path / "study"), "--results", str(tmp_path / "docs" / "results.md")],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    assert len(study["rows"]) == 3 and -1 <= study["tau"] <= 1 and set(study["winners"]) == {"evolution", "random"}
    assert all(w["macs"] <= study["budget"] for w in study["winners"].values())
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "Kendall" in text and "study_ranking.png" in text
    assert (tmp_path / "docs" / "study_ranking.png").stat().st_size > 0
