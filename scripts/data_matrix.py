"""The data matrix (issue 22): train-supernet and evolve over each data kind (digits, CIFAR-format batches, an
image folder, the Tiny-ImageNet layout) x --cache auto|on|off x --workers 0|2, at a tiny size. Each run must
end with exit 0, or one line and exit 2; never a traceback. Prints a table; exits 1 on any other outcome.

    python scripts/data_matrix.py [--tiny-imagenet ../shared/data/tiny-imagenet-10]
"""
import argparse
import itertools
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SPACE = str(ROOT / "search_spaces" / "tiny_imagenet.yaml")


def cifar(root: Path) -> tuple[str, str]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (40, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, 40).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    return "cifar10", str(root)


def image_folder(root: Path) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("val", 6)):
        for c in ("cat", "dog", "fox"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return str(root), "data"


def tiny_imagenet(root: Path, source: Path) -> tuple[str, str]:
    """Two classes of a Tiny-ImageNet-layout folder, 40 training images each."""
    wnids = (source / "wnids.txt").read_text().split()[:2]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for w in wnids:
        (root / "train" / w / "images").mkdir(parents=True)
        for image in sorted((source / "train" / w / "images").iterdir())[:40]:
            shutil.copy(image, root / "train" / w / "images")
    keep = [line for line in (source / "val" / "val_annotations.txt").read_text().splitlines()
            if line.split("\t")[1] in wnids]
    for line in keep:
        shutil.copy(source / "val" / "images" / line.split("\t")[0], root / "val" / "images")
    (root / "val" / "val_annotations.txt").write_text("\n".join(keep) + "\n")
    return str(root), "data"


def run(argv: list[str]) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "psvit_nas.cli", *argv], cwd=ROOT, capture_output=True, text=True)
    return proc.returncode, proc.stderr.strip()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny-imagenet", default=str(ROOT.parent / "shared" / "data" / "tiny-imagenet-10"))
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="data-matrix-"))
    kinds = {"digits": ("digits", "data", str(ROOT / "search_spaces" / "digits.yaml")),
             "cifar10 batches": (*cifar(work / "cifar"), SPACE),
             "image folder": (*image_folder(work / "folder"), SPACE)}
    if Path(args.tiny_imagenet).is_dir():
        kinds["tiny-imagenet layout"] = (*tiny_imagenet(work / "tiny", Path(args.tiny_imagenet)), SPACE)
    print("| data | --cache | --workers | train-supernet | evolve |\n|---|---|---:|---|---|")
    bad = 0
    for (kind, (data, data_dir, space)), cache, workers in itertools.product(kinds.items(), ("auto", "on", "off"),
                                                                            ("0", "2")):
        out = work / f"{kind}-{cache}-{workers}".replace(" ", "-")
        common = ["--data", data, "--data-dir", data_dir, "--cache", cache, "--workers", workers,
                  "--cache-dir", str(work / "cache")]
        results = [run(["train-supernet", "--config", space, "--epochs", "1", "--batch-size", "16",
                        "--search-holdout", "16", "--val-archs", "1", "--out", str(out / "sn"), *common])]
        results.append(run(["evolve", "--supernet", str(out / "sn" / "last.pt"), "--flops", "30M", "--population",
                            "4", "--generations", "1", "--topk", "2", "--cache", cache, "--workers", workers,
                            "--cache-dir", str(work / "cache"), "--out", str(out / "search")]))
        cells = []
        for code, err in results:
            ok = code == 0 or (code == 2 and len(err.splitlines()) == 1)
            bad += not ok
            cells.append("exit 0" if code == 0 else f"exit {code}: {err.splitlines()[-1] if err else ''}"
                         + ("" if ok else " **(not one line)**"))
        print(f"| {kind} | {cache} | {workers} | {cells[0]} | {cells[1]} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{len(kinds) * 6 * 2 - bad} of {len(kinds) * 6 * 2} runs ended with exit 0 or one line and exit 2")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
