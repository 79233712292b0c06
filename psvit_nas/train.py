"""The training loop, shared by SPOS supernet training and standalone training.

AdamW, warmup + cosine schedule per step, gradient clipping, optional EMA, bf16 autocast
on CUDA, DDP under torchrun (every rank samples the same path: the path of step t is a
pure function of (seed, t)). Batches come decoded (cached or streamed) and are augmented
on the device, seeded per step (`data.TrainLoader`). Checkpoints are written atomically
at every epoch end and, with `checkpoint_every_steps`, inside epochs; since data order,
paths and augmentation are functions of (seed, step), `resume` continues exactly from any
checkpointed step.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, Subset
from tqdm import tqdm

from .errors import ConfigError
from .data import (Augment, BatchAugment, CacheConfig, EvalBatches, TrainLoader, holdout_split, load_images,
                   num_classes, per_image_transform)
from .evaluate import evaluate, forward
from .io import atomic_write, atomic_write_text
from .samplers import PathSampler, make_sampler
from .space import Arch, SearchSpace


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss."""


class Preempted(RuntimeError):
    """SIGTERM or SIGINT ended training after the current step, which was checkpointed; `code` is the exit
    status a shell gives that signal (143, 130)."""

    def __init__(self, signum: int, checkpoint: Path, step: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}, checkpointed in {checkpoint}; "
                         "add --resume to continue exactly")
        self.code = 128 + signum


class _Signals:
    """SIGTERM and SIGINT, noted instead of killing the process, for the `with` block (main thread only:
    elsewhere, e.g. in a Ray Tune trial's thread, signals keep their handlers)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def agreed(self, env: "Dist") -> int | None:
        """The signal any rank received (every rank stops at the same step)."""
        if env.world == 1:
            return self.signum
        flag = torch.tensor([self.signum or 0], device=env.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    clip_grad: float | None = 5.0
    ema: float | None = None
    amp: str = "auto"  # auto: bf16 autocast on CUDA only
    seed: int = 0
    workers: int = 0
    save_every: int = 0
    checkpoint_every_steps: int = 0
    compile: bool = False
    val_archs: int = 3
    sampler: str = "uniform"
    sandwich_k: int = 2
    distill_weight: float = 0.5  # sandwich students: this share of the loss on the largest path, the rest on labels
    flops_range: tuple[float, float] | None = None
    augment: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_env(cls) -> "Dist":
        """Join the torchrun process group if there is one (NCCL on GPU, gloo on CPU)."""
        cuda = torch.cuda.is_available()
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(device=torch.device("cuda" if cuda else "cpu"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        return cls(dist.get_rank(), world, device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def gather(self, value: Any) -> list[Any]:
        if self.world == 1:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on what the model's `no_weight_decay()` names and on every 1-D tensor (biases, norms),
    as timm's optimizer factory does."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(total: int, warmup: int, min_ratio: float):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return factor


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically. When writing fails (a full disk: torch raises OSError or, from its zip
    writer, RuntimeError) the previous checkpoint is intact and the run stops with one line."""
    try:
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    except (OSError, RuntimeError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0]
        raise ConfigError(str(path), None, f"could not be written ({why}); the previous checkpoint is intact: "
                          "free some space and rerun with --resume") from None


def load_checkpoint(path: str | Path, space: SearchSpace | None = None) -> dict[str, Any]:
    """Load a psvit-nas checkpoint; with `space`, check that it was trained on that space."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), None, "checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(str(path), None, f"not a readable checkpoint ({err.__class__.__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "space" not in state:
        raise ConfigError(str(path), None, "not a psvit-nas training checkpoint (no 'model' and 'space')")
    if space is not None and SearchSpace.from_dict(state["space"]) != space:
        raise ConfigError(str(path), "space", f"checkpoint was trained on space {state['space'].get('name')!r}, "
                          f"which differs from {space.name!r}")
    return state


def _digest(text: str, previous: str = "") -> str:
    return hashlib.sha1((previous + text).encode()).hexdigest()[:16]


def _weights_digest(model: nn.Module) -> str:
    return _digest("".join(f"{p.detach().double().sum().item():.10e}" for p in model.parameters()))


def compile_cells(model: nn.Module, backend: str = "inductor") -> None:
    """Regional `torch.compile`: each cell module (and the stem) compiled on its own, so that a new
    supernet path reuses the cells compiled for earlier paths instead of recompiling the network."""
    cells = [module for stage in model.stages for cell in stage
             for module in (cell.values() if isinstance(cell, nn.ModuleDict) else [cell])]
    # every cell runs the same Block code on its own weights and shapes: one compiled variant per cell
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 2 * len(cells))
    model.stem.compile(dynamic=False, backend=backend)
    for module in cells:
        module.compile(dynamic=False, backend=backend)


def fit(model: nn.Module, space: SearchSpace, train_set: Dataset, val_set: Dataset, cfg: TrainConfig,
        out: str | Path, arch: Arch | None = None, resume: bool = False,
        run_config: dict[str, Any] | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train `model` (a Supernet when `arch` is None, else a PSViT of `arch`) and checkpoint into `out`.

    `train_set` and `val_set` hold decoded uint8 images (`data.load_images`). After each epoch's
    checkpoint, the main process passes that epoch's metrics to `on_epoch` (Ray Tune reports them).
    Returns the last epoch's metrics.
    """
    out = Path(out)
    env = Dist.from_env()
    supernet = arch is None
    sampler = make_sampler(cfg.sampler, space, cfg.seed, cfg.flops_range, cfg.sandwich_k) if supernet else None
    if sampler:
        sampler(0)  # fail fast when no path fits the range
    model.to(env.device)
    if cfg.compile:
        compile_cells(model)
    net = DistributedDataParallel(model, find_unused_parameters=supernet) if env.world > 1 else model
    amp = cfg.amp == "on" or (cfg.amp == "auto" and env.device.type == "cuda")
    aug = Augment(**cfg.augment)
    loader = TrainLoader(train_set, cfg.batch_size, BatchAugment(aug, space, cfg.seed), env.device, cfg.seed,
                         env.rank, env.world, per_image_transform(aug, space), cfg.workers)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ConfigError(None, "--batch-size", f"{cfg.batch_size} x {env.world} ranks is larger than the "
                          f"{len(train_set)} training images")
    total = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total, int(cfg.warmup_epochs * steps_per_epoch), cfg.min_lr / cfg.lr))
    ema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True) if cfg.ema \
        else None
    kind = "supernet" if supernet else "model"
    done, path_digest, last, running = 0, "", {}, (0.0, 0, 0.0)
    if resume and not (out / "last.pt").is_file():  # stopped before its first checkpoint: nothing to continue
        print(f"psvit-nas: no checkpoint in {out} yet; starting from step 0", file=sys.stderr)
    elif resume:
        state = load_checkpoint(out / "last.pt", space)
        if state.get("kind") != kind or state.get("arch") != (str(arch) if arch else None):
            raise ConfigError(str(out / "last.pt"), "kind", f"checkpoint holds a {state.get('kind')}, "
                              f"not this {kind}")
        if state.get("steps_per_epoch", steps_per_epoch) != steps_per_epoch:
            raise ConfigError(str(out / "last.pt"), "steps_per_epoch", f"checkpoint has "
                              f"{state['steps_per_epoch']} steps per epoch, this run {steps_per_epoch}; resume "
                              "with the same data, batch size and number of processes")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        done, path_digest = state["step"], state.get("path_digest", "")
        running = tuple(state.get("running", running))
        last = state.get("metrics", {})
        if env.main:  # drop lines of epochs after the checkpoint (a kill between the two writes)
            metrics = out / "metrics.jsonl"
            kept = [line for line in (metrics.read_text().splitlines() if metrics.is_file() else [])
                    if json.loads(line)["epoch"] <= done // steps_per_epoch]
            atomic_write_text(metrics, "".join(line + "\n" for line in kept))
    elif env.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").unlink(missing_ok=True)
    if env.main:
        config = {**(run_config or {}), "train": asdict(cfg), "kind": kind, "arch": str(arch) if arch else None,
                  "space": space.to_dict(), "world_size": env.world, "steps_per_epoch": steps_per_epoch,
                  "paths_per_step": len(sampler(0)) if sampler else 1}
        atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    writer = _tensorboard(out) if env.main else None
    val_archs = [PathSampler(space, cfg.seed + 7919, cfg.flops_range).path(i) for i in range(cfg.val_archs)] \
        if supernet else [None]
    val_batches = EvalBatches(Subset(val_set, range(env.rank, len(val_set), env.world)), space.image_size,
                              cfg.batch_size * 2, env.device, cfg.workers)
    smoothing = cfg.augment.get("label_smoothing", 0.0)

    def state_dict(step: int, running: tuple[float, int, float], metrics: dict[str, Any]) -> dict[str, Any]:
        return {"kind": kind, "space": space.to_dict(), "arch": str(arch) if arch else None, "step": step,
                "epoch": step // steps_per_epoch - 1, "steps_per_epoch": steps_per_epoch, "running": running,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None, "path_digest": path_digest,
                "config": asdict(cfg), "run": run_config or {}, "metrics": metrics}

    with _Signals() as signals:  # SIGTERM / SIGINT: stop after the current step, checkpointed
        for epoch in range(done // steps_per_epoch, cfg.epochs):
            first = max(0, done - epoch * steps_per_epoch)  # inside the epoch a checkpoint was written in
            loss_sum, seen, elapsed = running if first else (0.0, 0, 0.0)
            model.train()
            start = time.perf_counter() - elapsed
            bar = tqdm(loader.epoch(epoch, first), total=steps_per_epoch, initial=first,
                       desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                       disable=not (env.main and sys.stderr.isatty()), dynamic_ncols=True)
            for i, (x, y) in enumerate(bar, first):
                step = epoch * steps_per_epoch + i
                paths = sampler(step) if sampler else [None]
                if supernet:
                    path_digest = _digest(" ".join(map(str, paths)), path_digest)
                optimizer.zero_grad(set_to_none=True)  # SPOS: off-path weights keep grad None, so AdamW skips them
                soft, losses = None, []
                for j, path in enumerate(paths):  # several paths: gradients accumulate, one update, one all-reduce
                    accumulate = net.no_sync() if env.world > 1 and j < len(paths) - 1 else contextlib.nullcontext()
                    with accumulate:
                        with torch.autocast(device_type=env.device.type, dtype=torch.bfloat16, enabled=amp):
                            logits = forward(net, x, path)
                        loss = F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
                        if soft is not None:  # a student: in-place distillation, anchored on the labels
                            loss = torch.lerp(loss, F.cross_entropy(logits.float(), soft), cfg.distill_weight)
                        losses.append(loss.item())  # the pass's one host-device sync
                        if not math.isfinite(losses[-1]):
                            saved = f"last good checkpoint: {out / 'last.pt'}" if (out / "last.pt").is_file() \
                                else "no checkpoint was written before it"
                            raise NonFiniteLoss(f"non-finite loss ({losses[-1]}) at step {step} (epoch {epoch + 1}) on "
                                                f"path {path or arch}; {saved}")
                        (loss / len(paths)).backward()
                    if j == 0 and sampler is not None and sampler.distill:  # in-place distillation targets
                        soft = logits.detach().float().softmax(-1)
                loss_value = sum(losses) / len(losses)
                if cfg.clip_grad:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update_parameters(model)
                loss_sum += loss_value * len(x)
                seen += len(x)
                bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}",
                                img_s=f"{seen * env.world / (time.perf_counter() - start):.0f}")
                every = cfg.checkpoint_every_steps
                stop = signals.agreed(env)
                if (stop or every and (step + 1) % every == 0) and i + 1 < steps_per_epoch and env.main:
                    save_checkpoint(out / "last.pt", state_dict(step + 1, (loss_sum, seen, time.perf_counter() - start),
                                                                last))
                if stop and i + 1 < steps_per_epoch:  # at an epoch's end, the epoch's checkpoint comes first
                    raise Preempted(stop, out / "last.pt", step + 1)
            elapsed = time.perf_counter() - start
            scored = ema.module if ema is not None else model
            val = _validate(scored, val_batches, val_archs, env, amp)
            last = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch, "train_loss": loss_sum / seen,
                    "lr": scheduler.get_last_lr()[0], "images_per_s": seen * env.world / elapsed, **val}
            gathered = env.gather((path_digest, _weights_digest(model)))
            if supernet:
                last["path_digests"] = [g[0] for g in gathered]
            last["weight_digests"] = [g[1] for g in gathered]
            if env.main:
                state = state_dict(last["step"], (0.0, 0, 0.0), last)
                with open(out / "metrics.jsonl", "a") as fh:
                    fh.write(json.dumps(last) + "\n")
                save_checkpoint(out / "last.pt", state)
                if cfg.save_every and (epoch + 1) % cfg.save_every == 0:
                    save_checkpoint(out / f"epoch{epoch + 1}.pt", state)
                if writer is not None:
                    for key in ("train_loss", "lr", "images_per_s", "val_top1", "val_top5", "val_loss"):
                        writer.add_scalar(key, last[key], last["step"])
                print(f"epoch {epoch + 1}/{cfg.epochs}: loss {last['train_loss']:.4f}  val top-1 "
                      f"{last['val_top1']:.2f}%  top-5 {last['val_top5']:.2f}%  {last['images_per_s']:.0f} img/s",
                      flush=True)
                if on_epoch is not None:
                    on_epoch(last)
            if (stop := signals.agreed(env)) and epoch + 1 < cfg.epochs:
                raise Preempted(stop, out / "last.pt", last["step"])
    if writer is not None:
        writer.close()
    return last


def fit_on(model: nn.Module, space: SearchSpace, data: str, cfg: TrainConfig, out: str | Path,
           arch: Arch | None = None, holdout: int | None = 0, data_dir: str = "data", cache: CacheConfig | None = None,
           resume: bool = False, command: str = "",
           on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """`fit` on a dataset by name (`data.load_images`): its training images less `holdout` kept out for the
    search (None: 10 %, at most 10,000), scored on its validation split. Seeds torch with `cfg.seed` first."""
    Dist.from_env()  # join the process group first: rank 0 builds the image cache, the others wait
    train_set = load_images(data, "train", space, data_dir, cache)
    val_set = load_images(data, "val", space, data_dir, cache)
    if holdout is None:
        holdout = min(len(train_set) // 10, 10_000)
    keep, held = holdout_split(len(train_set), holdout)
    if held:
        train_set = Subset(train_set, keep)
    run_config = {"command": command, "data": data, "data_dir": data_dir, "num_classes": num_classes(val_set),
                  "search_holdout": holdout, "train_images": len(train_set), "val_images": len(val_set)}
    torch.manual_seed(cfg.seed)
    return fit(model, space, train_set, val_set, cfg, out, arch=arch, resume=resume, run_config=run_config,
               on_epoch=on_epoch)


def _validate(model: nn.Module, batches: EvalBatches, archs: list[Arch | None], env: Dist,
              amp: bool) -> dict[str, float]:
    """Validation metrics, averaged over the fixed validation paths; sharded over ranks without padding."""
    totals = torch.zeros(4, dtype=torch.float64)
    for arch in archs:
        m = evaluate(model, batches, arch, env.device, amp)
        totals += torch.tensor([m["top1"] * m["images"], m["top5"] * m["images"], m["loss"] * m["images"],
                                m["images"]], dtype=torch.float64)
    if env.world > 1:
        dist.all_reduce(totals)
    return {"val_top1": (totals[0] / totals[3]).item(), "val_top5": (totals[1] / totals[3]).item(),
            "val_loss": (totals[2] / totals[3]).item()}


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tb"))
