"""Run folders hold someone's hours of work: never overwritten without --force, never written by two processes."""
import json

import pytest

from conftest import SPACES
from psvit_nas.cli import main
from psvit_nas.errors import ConfigError
from psvit_nas.io import run_folder

DIGITS = str(SPACES / "digits.yaml")


def _train(out, *extra):
    return main(["train-supernet", "--config", DIGITS, "--out", str(out), "--epochs", "1", "--batch-size", "256",
                 "--val-archs", "1", "--workers", "0", *extra])


def test_a_run_folder_is_refused_without_resume_or_force_and_force_moves_it_aside(tmp_path, capsys):
    out = tmp_path / "sn"
    assert _train(out) == 0
    metrics = (out / "metrics.jsonl").read_text()
    assert _train(out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds a run" in err and "--resume" in err and "--force" in err
    assert (out / "metrics.jsonl").read_text() == metrics  # untouched
    assert _train(out, "--force") == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("sn.old-")]
    assert len(aside) == 1 and (aside[0] / "metrics.jsonl").read_text() == metrics  # moved, never deleted
    assert _train(out, "--resume", "--epochs", "2") == 0
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_evolve_refuses_to_overwrite_a_finished_search(tmp_path, capsys):
    assert _train(tmp_path / "sn") == 0
    search = ["evolve", "--supernet", str(tmp_path / "sn" / "last.pt"), "--flops", "1.2M", "--population", "4",
              "--generations", "1", "--topk", "2", "--out", str(tmp_path / "search")]
    assert main(search) == 0
    history = (tmp_path / "search" / "history.jsonl").read_text()
    capsys.readouterr()
    assert main(search) == 2 and "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "search" / "history.jsonl").read_text() == history


def test_a_second_writer_is_refused_and_named_the_holder(tmp_path):
    with run_folder(tmp_path / "run"):
        with pytest.raises(ConfigError, match=r"is being written by PID \d+ on .* since "):
            with run_folder(tmp_path / "run", resume=True):
                pass
    with run_folder(tmp_path / "run", resume=True):  # released when the holder ends
        pass


def test_bad_input_leaves_no_run_folder_behind(tmp_path, capsys):
    assert _train(tmp_path / "sn") == 0
    out = tmp_path / "search"
    assert main(["evolve", "--supernet", str(tmp_path / "sn" / "last.pt"), "--flops", "10K", "--out", str(out)]) == 2
    assert "--flops" in capsys.readouterr().err and not out.exists()


def test_a_full_disk_keeps_the_previous_checkpoint_and_stops_with_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import torch

    real_save, calls = torch.save, []

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) > 1:  # the first checkpoint is written, the second finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "sn"
    assert _train(out, "--epochs", "2") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "previous checkpoint is intact" in err
    kept = torch.load(out / "last.pt", weights_only=True)
    assert kept["step"] == kept["steps_per_epoch"]  # the end of the first epoch
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".last.pt")) == []  # no temp file left


def test_finalize_tune_and_analyze_refuse_a_run_folder_without_resume_or_force(tmp_path, capsys):
    (tmp_path / "final.yaml").write_text("kept: true\n")
    arch = tmp_path / "arch.yaml"
    assert main(["sample", "--config", DIGITS, "--out", str(arch)]) == 0
    import torch

    from psvit_nas import ArchSpec, PSViT

    torch.save(PSViT.from_spec(ArchSpec.from_yaml(arch)).state_dict(), tmp_path / "model.pt")
    commands = [["finalize", "--search", str(tmp_path / "nowhere")], ["tune", "--arch", str(arch), "--data", "digits"],
                ["analyze", "--arch", str(arch), "--weights", str(tmp_path / "model.pt"), "--data", "digits"]]
    capsys.readouterr()
    for command in commands:
        assert main([*command, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "already holds a run" in err and "--force" in err, (command, err)
    assert (tmp_path / "final.yaml").read_text() == "kept: true\n"


@pytest.mark.slow
def test_resume_before_the_first_checkpoint_starts_from_step_0(tmp_path, capsys):
    """Killed before it wrote anything to continue: --resume runs it whole instead of failing."""
    out = tmp_path / "sn"
    out.mkdir()
    (out / "config.yaml").write_text("command: psvit-nas train-supernet ...\n")  # what the killed run left
    assert _train(out, "--resume") == 0
    assert "no checkpoint in" in capsys.readouterr().err
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
