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
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, Subset
from tqdm import tqdm

from ..data import (Augment, BatchAugment, CacheConfig, EvalBatches, TrainLoader, holdout_split, load_images,
                    num_classes, per_image_transform)
from ..errors import ConfigError
from ..evaluate import evaluate, forward, has_batchnorm, recalibrate_bn
from ..io import atomic_write_text
from ..samplers import PathSampler, make_sampler
from ..space import Arch, SearchSpace
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .distributed import Dist, Preempted, Signals
from .optim import param_groups, warmup_cosine

OnEpoch = Callable[[dict[str, Any]], None]


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss."""


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
        run_config: dict[str, Any] | None = None, on_epoch: OnEpoch | None = None) -> dict[str, Any]:
    """Train `model` (a Supernet when `arch` is None, else a PSViT of `arch`) and checkpoint into `out`.

    `train_set` and `val_set` hold decoded uint8 images (`data.load_images`). After each epoch's
    checkpoint, the main process passes that epoch's metrics to `on_epoch` (Ray Tune reports them).
    Returns the last epoch's metrics.
    """
    run = _Run(model, space, train_set, val_set, cfg, Path(out), arch, run_config or {})
    run.start(resume)
    with Signals() as signals:  # SIGTERM / SIGINT: stop after the current step, checkpointed
        for epoch in range(run.done // run.steps_per_epoch, cfg.epochs):
            run.end_epoch(epoch, *run.train_epoch(epoch, signals), on_epoch)
            if (stop := signals.agreed(run.env)) and epoch + 1 < cfg.epochs:
                raise Preempted(stop, run.out / "last.pt", run.last["step"])
    if run.writer is not None:
        run.writer.close()
    return run.last


def fit_on(model: nn.Module, space: SearchSpace, data: str, cfg: TrainConfig, out: str | Path,
           arch: Arch | None = None, holdout: int | None = 0, data_dir: str = "data", cache: CacheConfig | None = None,
           resume: bool = False, command: str = "", on_epoch: OnEpoch | None = None,
           monitor: str = "val") -> dict[str, Any]:
    """`fit` on a dataset by name (`data.load_images`): its training images less `holdout` kept out for the
    search (None: 10 %, at most 10,000), scored on its validation split, or with `monitor="search"` on the
    held-out training images (a supernet for the search then never reads the validation images).
    Seeds torch with `cfg.seed` first."""
    Dist.from_env()  # join the process group first: rank 0 builds the image cache, the others wait
    images = load_images(data, "train", space, data_dir, cache)
    if holdout is None:
        holdout = min(len(images) // 10, 10_000)
    keep, held = holdout_split(len(images), holdout)
    if monitor == "search" and not held:
        raise ConfigError(None, "--search-holdout", "--monitor search scores on the held-out training images: "
                          "expected a positive number of them, got 0")
    train_set = Subset(images, keep) if held else images
    val_set = Subset(images, held) if monitor == "search" else load_images(data, "val", space, data_dir, cache)
    run_config = {"command": command, "data": data, "data_dir": data_dir, "num_classes": num_classes(val_set),
                  "search_holdout": holdout, "train_images": len(train_set), "monitor": monitor,
                  "val_images": len(val_set)}
    torch.manual_seed(cfg.seed)
    return fit(model, space, train_set, val_set, cfg, out, arch=arch, resume=resume, run_config=run_config,
               on_epoch=on_epoch)


class _Run:
    """One training run: the model and its optimizer, schedule and EMA, the data, the sampled paths, where
    it stands (`done` steps, `last` epoch's metrics) and the run folder it writes."""

    def __init__(self, model: nn.Module, space: SearchSpace, train_set: Dataset, val_set: Dataset,
                 cfg: TrainConfig, out: Path, arch: Arch | None, run_config: dict[str, Any]) -> None:
        self.env, self.model, self.space, self.cfg, self.out, self.arch = Dist.from_env(), model, space, cfg, out, arch
        self.run_config, self.kind = run_config, "model" if arch else "supernet"
        self.sampler = None if arch else make_sampler(cfg.sampler, space, cfg.seed, cfg.flops_range, cfg.sandwich_k,
                                                      cfg.part)
        if self.sampler:
            self.sampler(0)  # fail fast when no path fits the range
        model.to(self.env.device)
        if cfg.compile:
            compile_cells(model)
        self.net = DistributedDataParallel(model, find_unused_parameters=arch is None) if self.env.world > 1 \
            else model
        self.amp = cfg.amp == "on" or (cfg.amp == "auto" and self.env.device.type == "cuda")
        self._data(train_set, val_set)
        self._optimizer()
        self.done, self.path_digest, self.last, self.running = 0, "", {}, (0.0, 0, 0.0)
        self.writer = None

    def _data(self, train_set: Dataset, val_set: Dataset) -> None:
        cfg, env, space = self.cfg, self.env, self.space
        aug = Augment(**cfg.augment)
        self.loader = TrainLoader(train_set, cfg.batch_size, BatchAugment(aug, space, cfg.seed), env.device,
                                  cfg.seed, env.rank, env.world, per_image_transform(aug, space), cfg.workers,
                                  cfg.repeated_aug)
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise ConfigError(None, "--batch-size", f"{cfg.batch_size} x {env.world} ranks is larger than the "
                              f"{len(train_set)} training images")
        self.val_archs = [PathSampler(space, cfg.seed + 7919, cfg.flops_range, keep=self.sampler.keep).path(i)
                          for i in range(cfg.val_archs)] if self.sampler else [None]
        self.val_batches = EvalBatches(Subset(val_set, range(env.rank, len(val_set), env.world)), space.image_size,
                                       cfg.batch_size * 2, env.device, cfg.workers)
        self.bn_batches = _calibration_batches(train_set, space, cfg, env) \
            if cfg.bn_batches and has_batchnorm(self.model) else None

    def _optimizer(self) -> None:
        cfg, model = self.cfg, self.model
        total, lr = self.steps_per_epoch * cfg.epochs, cfg.scaled_lr(self.env.world)
        warmup = min(int(cfg.warmup_epochs * self.steps_per_epoch), total // 2)  # a short schedule still anneals
        self.optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           warmup_cosine(total, warmup, min(1.0, cfg.min_lr / lr)))
        self.ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True) \
            if cfg.ema else None

    # ----- the run folder -------------------------------------------------------------------------------
    def start(self, resume: bool) -> None:
        """Continue from `out/last.pt` (`resume`) or start afresh; write config.yaml and open TensorBoard."""
        if resume and not (self.out / "last.pt").is_file():  # stopped before its first checkpoint
            print(f"psvit-nas: no checkpoint in {self.out} yet; starting from step 0", file=sys.stderr)
        elif resume:
            self._restore(load_checkpoint(self.out / "last.pt", self.space))
        elif self.env.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "metrics.jsonl").unlink(missing_ok=True)
        if self.env.main:
            config = {**self.run_config, "train": asdict(self.cfg), "kind": self.kind, "arch": self._arch_name,
                      "space": self.space.to_dict(), "world_size": self.env.world,
                      "steps_per_epoch": self.steps_per_epoch,
                      "paths_per_step": len(self.sampler(0)) if self.sampler else 1}
            atomic_write_text(self.out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
            self.writer = _tensorboard(self.out)

    @property
    def _arch_name(self) -> str | None:
        return str(self.arch) if self.arch else None

    def _restore(self, state: dict[str, Any]) -> None:
        """Take up a checkpoint of this same run, and drop metrics lines of epochs after it (a kill between the
        two writes)."""
        where, spe = str(self.out / "last.pt"), self.steps_per_epoch
        if state.get("kind") != self.kind or state.get("arch") != self._arch_name:
            raise ConfigError(where, "kind", f"checkpoint holds a {state.get('kind')}, not this {self.kind}")
        if state.get("steps_per_epoch", spe) != spe:
            raise ConfigError(where, "steps_per_epoch", f"checkpoint has {state['steps_per_epoch']} steps per "
                              f"epoch, this run {spe}; resume with the same data, batch size and number of processes")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.done, self.path_digest = state["step"], state.get("path_digest", "")
        self.running = tuple(state.get("running", self.running))
        self.last = state.get("metrics", {})
        if self.env.main:
            metrics = self.out / "metrics.jsonl"
            kept = [line for line in (metrics.read_text().splitlines() if metrics.is_file() else [])
                    if json.loads(line)["epoch"] <= self.done // spe]
            atomic_write_text(metrics, "".join(line + "\n" for line in kept))

    def checkpoint(self, step: int, running: tuple[float, int, float], metrics: dict[str, Any],
                   name: str = "last.pt") -> None:
        """Everything `--resume` needs to continue exactly at `step`."""
        save_checkpoint(self.out / name, {
            "kind": self.kind, "space": self.space.to_dict(), "arch": self._arch_name, "step": step,
            "epoch": step // self.steps_per_epoch - 1, "steps_per_epoch": self.steps_per_epoch, "running": running,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "ema": self.ema.state_dict() if self.ema is not None else None,
            "path_digest": self.path_digest, "config": asdict(self.cfg), "run": self.run_config, "metrics": metrics})

    # ----- training -------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int, signals: Signals) -> tuple[float, int, float]:
        """The epoch's steps from where the run stands; its summed loss, images seen and seconds. Checkpoints
        every `checkpoint_every_steps` and on a signal, which it then raises as `Preempted`."""
        spe, env = self.steps_per_epoch, self.env
        first = max(0, self.done - epoch * spe)  # inside the epoch a checkpoint was written in
        loss_sum, seen, elapsed = self.running if first else (0.0, 0, 0.0)
        self.model.train()
        start = time.perf_counter() - elapsed
        bar = tqdm(self.loader.epoch(epoch, first), total=spe, initial=first, desc=f"epoch {epoch + 1}/"
                   f"{self.cfg.epochs}", leave=False, disable=not (env.main and sys.stderr.isatty()),
                   dynamic_ncols=True)
        for i, (x, y) in enumerate(bar, first):
            step = epoch * spe + i
            loss = self.step(x, y, step, epoch)
            loss_sum, seen = loss_sum + loss * len(x), seen + len(x)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}",
                            img_s=f"{seen * env.world / (time.perf_counter() - start):.0f}")
            every, stop = self.cfg.checkpoint_every_steps, signals.agreed(env)
            if (stop or every and (step + 1) % every == 0) and i + 1 < spe and env.main:
                self.checkpoint(step + 1, (loss_sum, seen, time.perf_counter() - start), self.last)
            if stop and i + 1 < spe:  # at an epoch's end, the epoch's checkpoint comes first
                raise Preempted(stop, self.out / "last.pt", step + 1)
        return loss_sum, seen, time.perf_counter() - start

    def step(self, x: Tensor, y: Tensor, step: int, epoch: int) -> float:
        """One optimizer step on the step's paths (gradients of several paths accumulate: one update, one
        all-reduce); the mean loss over the paths."""
        paths = self.sampler(step) if self.sampler else [None]
        if self.sampler:
            self.path_digest = _digest(" ".join(map(str, paths)), self.path_digest)
        self.optimizer.zero_grad(set_to_none=True)  # SPOS: off-path weights keep grad None, so AdamW skips them
        soft, losses = None, []
        for j, path in enumerate(paths):
            last_path = self.env.world == 1 or j == len(paths) - 1
            with contextlib.nullcontext() if last_path else self.net.no_sync():
                logits, loss = self._loss(x, y, soft, path)
                losses.append(loss.item())  # the pass's one host-device sync
                if not math.isfinite(losses[-1]):
                    self._non_finite(losses[-1], step, epoch, path)
                (loss / len(paths)).backward()
            if j == 0 and self.sampler is not None and self.sampler.distill:  # in-place distillation targets
                soft = logits.detach().float().softmax(-1)
        if self.cfg.clip_grad:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return sum(losses) / len(losses)

    def _loss(self, x: Tensor, y: Tensor, soft: Tensor | None, path: Arch | None = None) -> tuple[Tensor, Tensor]:
        """Logits and loss of one path; a sandwich student (`soft` given) is distilled, anchored on the labels."""
        with torch.autocast(device_type=self.env.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = forward(self.net, x, path)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.augment.get("label_smoothing", 0.0))
        if soft is not None:
            loss = torch.lerp(loss, F.cross_entropy(logits.float(), soft), self.cfg.distill_weight)
        return logits, loss

    def _non_finite(self, loss: float, step: int, epoch: int, path: Arch | None) -> None:
        saved = f"last good checkpoint: {self.out / 'last.pt'}" if (self.out / "last.pt").is_file() \
            else "no checkpoint was written before it"
        raise NonFiniteLoss(f"non-finite loss ({loss}) at step {step} (epoch {epoch + 1}) on path "
                            f"{path or self.arch}; {saved}")

    # ----- epoch end ------------------------------------------------------------------------------------
    def end_epoch(self, epoch: int, loss_sum: float, seen: int, elapsed: float, on_epoch: OnEpoch | None) -> None:
        """Validate, then (main process) append the epoch's metrics, checkpoint, log, and call `on_epoch`."""
        env, cfg = self.env, self.cfg
        validated = self.ema.module if self.ema is not None else self.model
        if self.bn_batches is not None and self.arch:
            recalibrate_bn(validated, self.bn_batches, env.device)
        val = _validate(validated, self.val_batches, self.val_archs, env, self.amp,
                        None if self.arch else self.bn_batches)
        last = {"epoch": epoch + 1, "step": (epoch + 1) * self.steps_per_epoch, "train_loss": loss_sum / seen,
                "lr": self.scheduler.get_last_lr()[0], "images_per_s": seen * env.world / elapsed, **val}
        gathered = env.gather((self.path_digest, _weights_digest(self.model)))
        if self.sampler:
            last["path_digests"] = [g[0] for g in gathered]
        last["weight_digests"] = [g[1] for g in gathered]
        self.last = last
        if not env.main:
            return
        with open(self.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(last) + "\n")
        self.checkpoint(last["step"], (0.0, 0, 0.0), last)
        if cfg.save_every and (epoch + 1) % cfg.save_every == 0:
            self.checkpoint(last["step"], (0.0, 0, 0.0), last, f"epoch{epoch + 1}.pt")
        if self.writer is not None:
            for key in ("train_loss", "lr", "images_per_s", "val_top1", "val_top5", "val_loss"):
                self.writer.add_scalar(key, last[key], last["step"])
        scored_on = "held-out top-1" if self.run_config.get("monitor") == "search" else "val top-1"
        print(f"epoch {epoch + 1}/{cfg.epochs}: loss {last['train_loss']:.4f}  {scored_on} {last['val_top1']:.2f}%  "
              f"top-5 {last['val_top5']:.2f}%  {last['images_per_s']:.0f} img/s", flush=True)
        if on_epoch is not None:
            on_epoch(last)


def _digest(text: str, previous: str = "") -> str:
    return hashlib.sha1((previous + text).encode()).hexdigest()[:16]


def _weights_digest(model: nn.Module) -> str:
    return _digest("".join(f"{p.detach().double().sum().item():.10e}" for p in model.parameters()))


def _validate(model: nn.Module, batches: EvalBatches, archs: list[Arch | None], env: Dist, amp: bool,
              bn_batches: EvalBatches | None = None) -> dict[str, float]:
    """Validation metrics, averaged over the fixed validation paths (of a supernet: each path a copy whose
    BatchNorm statistics are re-estimated on `bn_batches` when given); sharded over ranks without padding."""
    totals = torch.zeros(4, dtype=torch.float64)
    for arch in archs:
        net, path = model, arch
        if bn_batches is not None:
            net, path = model.export(arch).to(env.device), None
            if has_batchnorm(net):
                recalibrate_bn(net, bn_batches, env.device)
        m = evaluate(net, batches, path, env.device, amp)
        totals += torch.tensor([m["top1"] * m["images"], m["top5"] * m["images"], m["loss"] * m["images"],
                                m["images"]], dtype=torch.float64)
    if env.world > 1:
        dist.all_reduce(totals)
    return {"val_top1": (totals[0] / totals[3]).item(), "val_top5": (totals[1] / totals[3]).item(),
            "val_loss": (totals[2] / totals[3]).item()}


def _calibration_batches(train_set: Dataset, space: SearchSpace, cfg: TrainConfig, env: Dist) -> EvalBatches:
    """`cfg.bn_batches` fixed batches of training images without augmentation (a seeded choice, the same on
    every rank and every epoch), on which BatchNorm statistics are re-estimated before each validation (a
    standalone model's in place; a supernet's on a copy of each validation path): running statistics lag
    the weights while the learning rate is high (a Re-Attention path at 5 % top-1 mid-schedule reads 35 %
    once re-estimated) and settle only as it anneals."""
    pick = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(cfg.seed + 104729))
    return EvalBatches(Subset(train_set, pick[: cfg.bn_batches * cfg.batch_size].tolist()), space.image_size,
                       cfg.batch_size, env.device, cfg.workers)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tb"))
