"""Atomic file writes (a temp file in the same folder, then a rename) and run folders that are never
overwritten or written by two processes."""
from __future__ import annotations

import contextlib
import hashlib
import fcntl
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from .errors import ConfigError

_UMASK = os.umask(0)
os.umask(_UMASK)


def file_digest(path: str | Path) -> str:
    """A file's content hash (16 hex digits): the cache key that ties results to exact weights or records."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, then move the temp file onto `path` so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # as open() would have made it, not mkstemp's owner-only 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def new_figure(width: float, height: float):
    """(figure, axes) of `width` x `height` inches on the Agg backend."""
    return pyplot().subplots(figsize=(width, height))


def save_figure(fig, path: str | Path) -> None:
    """Write a matplotlib figure as PNG atomically, then close it."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))
    pyplot().close(fig)


RUN_FILES = ("config.yaml", "metrics.jsonl", "last.pt", "history.jsonl", "search_state.json", "records", "tune",
             "final.yaml", "recipe.yaml", "attention_similarity.json", "fewshot.yaml", "part0")


def holds_run(folder: Path) -> bool:
    """Whether `folder` holds (part of) a run: a config, metrics, a checkpoint, a search history, records, a
    Ray Tune experiment or a command's result."""
    return any((folder / name).exists() for name in RUN_FILES)


def move_aside(folder: Path) -> Path:
    """Rename a run folder to FOLDER.old-<time> (what --force does with a run: never deleted)."""
    aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.rename(aside)
    return aside


@contextlib.contextmanager
def run_folder(out: str | Path, resume: bool = False, force: bool = False) -> Iterator[Path]:
    """Own the run folder `out` for a `with` block: refuse one that holds a run unless `resume` (continue it) or
    `force` (start over: the old folder is moved aside to OUT.old-<time>, never deleted), and hold an OS lock on
    it so that a second writer is refused (a killed process releases it). Under torchrun only rank 0 owns it."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield Path(out)
        return
    out = Path(out)
    if holds_run(out) and not resume:
        if not force:
            raise ConfigError(str(out), None, "already holds a run; add --resume to continue it, or --force to "
                              "start over (the old run is moved aside, not deleted)")
        move_aside(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(out):
            yield out
    except BaseException:
        if created and [p.name for p in out.iterdir()] == [".lock"]:  # bad input: leave nothing behind
            (out / ".lock").unlink()
            out.rmdir()
        raise


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """An exclusive OS lock on OUT/.lock for the block, which records its holder."""
    with open(out / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise ConfigError(str(out), None, f"is being written by {holder}; wait for it to end or choose "
                              "another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"PID {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        lock.flush()
        yield
