"""The decoded-image cache: a split decoded once at the stored size, memory-mapped afterwards.

A cache entry is a folder `<name>-<split>-<size>px-<key>` holding `images.npy` (uint8,
N x C x S x S), `labels.npy` and `meta.json`. The key hashes the dataset's content (for
image files: every path, label, size and modification time; for in-memory arrays: their
bytes), the stored size and the format version, so a changed dataset is never served
stale. Entries are built in a temporary folder and renamed into place (atomic); a damaged
entry is rebuilt. Under DDP rank 0 builds and the other ranks wait for it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..errors import ConfigError
from ..space import SearchSpace
from .datasets import ImageList, TensorImages, load_split, stored_size

FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """$PSVIT_NAS_CACHE_DIR, else $XDG_CACHE_HOME/psvit-nas, else ~/.cache/psvit-nas."""
    if os.environ.get("PSVIT_NAS_CACHE_DIR"):
        return Path(os.environ["PSVIT_NAS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "psvit-nas"


@dataclass(frozen=True)
class CacheConfig:
    """`--cache auto|on|off`, `--cache-dir`, `--cache-limit` (bytes a split may take to be cached under auto)."""

    mode: str = "auto"
    dir: str | None = None
    limit: float = 16e9
    workers: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "on", "off"):
            raise ConfigError(None, "--cache", f"expected auto, on or off; got {self.mode!r}")

    @property
    def root(self) -> Path:
        return Path(self.dir) if self.dir else default_cache_dir()


class CachedImages(Dataset):
    """A decoded split, memory-mapped: `images` (N, C, S, S) uint8 and `labels` (N,) int64 tensors."""

    def __init__(self, folder: Path) -> None:
        meta = json.loads((folder / "meta.json").read_text())
        images = np.load(folder / "images.npy", mmap_mode="c")
        labels = np.load(folder / "labels.npy")
        if images.dtype != np.uint8 or list(images.shape) != meta["shape"] or labels.shape != images.shape[:1]:
            raise ValueError(f"images {images.dtype} {images.shape}, labels {labels.shape}, expected {meta['shape']}")
        self.folder, self.classes = folder, meta["classes"]
        self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)
        self.channels = images.shape[1]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], int(self.labels[index])


def fingerprint(source: Dataset, size: int) -> str:
    """Content key of a decoded split: what it was decoded from, and at which size."""
    h = hashlib.sha1(f"psvit-nas image cache v{FORMAT_VERSION} {size}px {source.channels}ch".encode())
    h.update(json.dumps(source.classes).encode())
    if isinstance(source, TensorImages):
        h.update(np.ascontiguousarray(source.images).tobytes())
        h.update(np.asarray(source.labels, dtype=np.int64).tobytes())
    elif isinstance(source, ImageList):
        for path, label in source.samples:
            st = path.stat()
            h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        raise TypeError(f"cannot fingerprint a {type(source).__name__}")
    return h.hexdigest()[:16]


def _build(source: Dataset, folder: Path, size: int, workers: int) -> None:
    """Decode `source` into a temporary folder beside `folder`, then rename it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        shape = (len(source), source.channels, size, size)
        images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=shape)
        labels = np.empty(len(source), dtype=np.int64)
        done = 0
        loader = DataLoader(source, batch_size=256, num_workers=workers)
        for x, y in tqdm(loader, desc=f"caching {folder.name}", leave=False, disable=not sys.stderr.isatty(),
                         dynamic_ncols=True):
            images[done:done + len(x)] = x.numpy()
            labels[done:done + len(x)] = y.numpy()
            done += len(x)
        images.flush()
        del images
        np.save(tmp / "labels.npy", labels)
        (tmp / "meta.json").write_text(json.dumps({"shape": list(shape), "classes": source.classes,
                                                   "version": FORMAT_VERSION}))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same entry first
            if not folder.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _open_or_build(source: Dataset, folder: Path, size: int, workers: int) -> CachedImages:
    if folder.is_dir():
        try:
            return CachedImages(folder)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
            print(f"psvit-nas: image cache {folder} is damaged ({err.__class__.__name__}: {err}); rebuilding it",
                  file=sys.stderr)
            shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _build(source, folder, size, workers)
    except OSError as err:
        raise ConfigError(str(folder.parent), "--cache-dir", f"cannot write the image cache "
                          f"({err.__class__.__name__}); choose another --cache-dir or --cache off") from None
    try:
        return CachedImages(folder)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise ConfigError(str(folder), "--cache-dir", f"unreadable image cache ({err.__class__.__name__})") from None


def cached(source: Dataset, name: str, split: str, space: SearchSpace, cfg: CacheConfig) -> Dataset:
    """`source` decoded from the cache (built on first use), or `source` itself when it is not cached."""
    size = stored_size(space)
    nbytes = len(source) * source.channels * size * size
    if cfg.mode == "off" or (cfg.mode == "auto" and nbytes > cfg.limit):
        if cfg.mode == "auto":
            print(f"psvit-nas: {name} {split} ({nbytes / 1e9:.1f} GB decoded) exceeds --cache-limit "
                  f"{cfg.limit / 1e9:.1f} GB; streaming it", file=sys.stderr)
        return source
    folder = cfg.root / f"{name}-{split}-{size}px-{fingerprint(source, size)}"
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if not distributed:
        return _open_or_build(source, folder, size, cfg.workers)
    return _built_by_rank0(source, folder, size, cfg.workers)


def _built_by_rank0(source: Dataset, folder: Path, size: int, workers: int) -> CachedImages:
    """Under DDP rank 0 builds the cache and tells the others whether it could: a failure ends every rank at
    once with one line, not at the process group's timeout."""
    images, failure = None, None
    if dist.get_rank() == 0:
        try:
            images = _open_or_build(source, folder, size, workers)
        except Exception as err:  # every rank must hear of it before rank 0 raises it
            failure = err
    message = [None if failure is None else str(failure)]
    dist.broadcast_object_list(message, src=0)  # the barrier that also carries rank 0's outcome
    if failure is not None:
        raise failure
    if message[0] is not None:
        raise ConfigError(None, "--cache-dir", f"rank 0 could not build the image cache: {message[0]}")
    return images or CachedImages(folder)


def load_images(data: str, split: str, space: SearchSpace, data_dir: str | Path = "data",
                cache: CacheConfig | None = None) -> Dataset:
    """One split as decoded uint8 images at the stored size: from the cache, or streamed when not cached."""
    source = load_split(data, split, space, data_dir)
    name = data if data in ("digits", "cifar10", "cifar100") else Path(data).resolve().name
    return cached(source, name, split, space, cache or CacheConfig())
