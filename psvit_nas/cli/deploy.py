"""`latency`, `export`, `bench`: what a model costs on a device, and artifacts that run without psvit-nas."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..cost import count_cost
from ..errors import ConfigError
from ..space import ArchSpec, SearchSpace, format_macs
from .common import add_bn_batches_arg, add_cache_args, command, format_params
from .models import inherited_or_standalone


def _device(name: str) -> str:
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(None, "--device", "CUDA is not available on this machine")
    return name


@command("latency")
def cmd_latency(args: argparse.Namespace) -> None:
    from ..latency import build_table

    space = SearchSpace.from_yaml(args.config)
    if args.batch_size < 1 or (args.threads is not None and args.threads < 1):
        raise ConfigError(None, "--batch-size/--threads", "expected positive integers")
    table = build_table(space, _device(args.device), args.batch_size, args.threads, args.calibrate, args.validate,
                        args.repeats, args.seed)
    table.save(args.out)
    fastest, slowest = table.limit().extremes(space)
    print(f"wrote {args.out}: {space.name} on {table.device}, batch {table.batch_size}, {table.threads} threads; "
          f"predicted latency {fastest:.3g} to {slowest:.3g} ms")
    for kind, label in (("plain_sum", "sum of parts"), ("predicted", f"x {table.scale:.3f} (calibrated)")):
        stats = table.validation.get(kind)
        if stats:
            print(f"  {label:<22} against {stats['archs']} measured architectures: "
                  f"{100 * stats['within_10pct']:.0f} % within +-10 %, median error "
                  f"{100 * stats['median_error']:.1f} %, 90th percentile {100 * stats['p90_error']:.1f} %")


@command("export")
def cmd_export(args: argparse.Namespace) -> None:
    from ..export import format_for, save_artifact

    spec = ArchSpec.from_yaml(args.arch)
    fmt = format_for(args.out, args.format)
    model = inherited_or_standalone(args, spec)
    save_artifact(model, args.out, fmt)
    cost = count_cost(spec)
    load = {"safetensors": "psvit-nas eval --weights path, or in timm: import psvit_nas.timm; timm.create_model("
                           f"'psvit_nas', pretrained=True, pretrained_cfg_overlay=dict(file='{args.out}')) (the spec "
                           "is in its metadata)",
            "state_dict": "PSViT.from_spec(ArchSpec.from_yaml(spec)).load_state_dict(torch.load(path))",
            "onnx": "onnxruntime.InferenceSession(path) (no psvit-nas needed)",
            "pt2": "torch.export.load(path).module() (no psvit-nas needed)"}[fmt]
    print(f"wrote {args.out} ({fmt}): {spec.arch} ({format_macs(cost.macs)} MACs, {format_params(cost.params)} "
          f"params); load it with {load}")


@command("bench")
def cmd_bench(args: argparse.Namespace) -> None:
    import torch

    from ..latency import LatencyTable, time_call

    spec = ArchSpec.from_yaml(args.arch)
    space = spec.space
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    x = torch.randn(args.batch_size, space.in_chans, space.image_size, space.image_size)
    if args.onnx:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        if not Path(args.onnx).is_file():
            raise ConfigError(args.onnx, None, "ONNX file not found")
        session = onnxruntime.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x.numpy()}
        run, what, device = (lambda: session.run(None, feed)), f"ONNX Runtime ({args.onnx})", "cpu"
    else:
        from ..model import PSViT
        from ..train import load_weights

        device = _device(args.device)
        model = (load_weights(args.weights, spec) if args.weights else PSViT.from_spec(spec)).to(device).eval()
        x = x.to(device)

        def run():
            with torch.inference_mode():
                model(x)
        what = "PyTorch" + (f" ({args.weights})" if args.weights else " (fresh weights)")
    ms = time_call(run, device, warmup=args.warmup, repeats=args.repeats)
    print(f"{spec.arch}: {ms:.3f} ms per batch of {args.batch_size}, {1e3 * args.batch_size / ms:.0f} images/s "
          f"on {device}, {threads} threads, {what}; median of {args.repeats} runs")
    if args.latency_table:
        table = LatencyTable.load(args.latency_table)
        table.check_space(space, args.arch)
        predicted = table.predict(spec.arch)
        note = "" if (table.batch_size, table.threads, table.device) == (args.batch_size, threads, device) else \
            f" (the table was measured at batch {table.batch_size}, {table.threads} threads, on {table.device})"
        print(f"predicted by {args.latency_table}: {predicted:.3f} ms, {100 * (predicted / ms - 1):+.1f} %{note}")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """This group's subcommands and their arguments."""
    p = sub.add_parser("latency", help="measure a latency table (every cell, stem, pooling step, head) on this device")
    p.add_argument("--config", required=True, help="search space YAML")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's, usually the cores)")
    p.add_argument("--out", required=True, help="table to write, e.g. lut.json")
    p.add_argument("--calibrate", type=int, default=20, help="architectures measured whole to calibrate the sum")
    p.add_argument("--validate", type=int, default=50, help="other architectures measured whole to report the "
                   "prediction's error (0: skip)")
    p.add_argument("--repeats", type=int, default=15, help="timed runs per measurement (median)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("export", help="a standalone model: safetensors weights with the spec in their metadata "
                       "(.safetensors), a state dict (.pt), ONNX (.onnx) or torch.export (.pt2)")
    p.add_argument("--arch", required=True, help="architecture spec (best.yaml)")
    p.add_argument("--supernet", help="train-supernet checkpoint: export the spec's path with inherited weights")
    p.add_argument("--weights", help="or a .safetensors / .pt / train checkpoint of the spec (a retrained model)")
    p.add_argument("--out", required=True, help="file to write: model.safetensors, model.pt, model.onnx or "
                   "model.pt2")
    p.add_argument("--format", choices=["safetensors", "state_dict", "onnx", "pt2"], default=None,
                   help="default: from --out's suffix (.onnx, .pt2, .pt; otherwise safetensors)")
    p.add_argument("--data", default=None, help="dataset for BatchNorm recalibration (default: the supernet's)")
    p.add_argument("--data-dir", default=None)
    add_bn_batches_arg(p)
    add_cache_args(p)
    p = sub.add_parser("bench", help="images/s and latency of an architecture on this machine")
    p.add_argument("--arch", required=True, help="architecture spec YAML")
    p.add_argument("--weights", help="model.safetensors, model.pt or a checkpoint (default: fresh weights; timing "
                   "does not depend on them)")
    p.add_argument("--onnx", help="time this ONNX file with ONNX Runtime instead of PyTorch")
    p.add_argument("--device", default="cpu", help="cpu | cuda (PyTorch only)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--latency-table", help="also print this table's prediction for the architecture")
