#!/usr/bin/env bash
# The prepared GPU check (issue 36): at most ~8 minutes on one GPU. Runs the tests marked `cuda`, the training
# benchmark against timm's DeiT-Tiny in bf16 with and without --compile, a 1-epoch supernet on the bundled
# digits, and writes docs/gpu.md with the device named. Without CUDA it runs the CPU-side checks, says so in
# one line and exits 0.
#     bash scripts/gpu_check.sh [OUT.md]      (default docs/gpu.md)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/gpu.md}"
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    python -m pytest -q -n 0 -m cuda tests/test_cuda.py > /dev/null  # collects and skips: the file still imports
    bash -n scripts/gpu_check.sh
    echo "gpu_check: no CUDA device here: ran the CPU-side checks only, wrote nothing"
    exit 0
fi
tmp="$(mktemp -d)"
device="$(python -c 'import torch; print(torch.cuda.get_device_name(0))')"
section() {  # title, command...: run it with a time limit, keep its output for the report
    local title="$1"; shift
    echo "== $title"
    { echo; echo "## $title"; echo; echo '```'; echo "\$ $*"
      timeout 240 "$@" 2>&1 | tail -40; echo "(exit ${PIPESTATUS[0]})"; echo '```'; } >> "$tmp/report.md"
}
section "tests marked cuda" python -m pytest -q -n 0 -m cuda tests/test_cuda.py -p no:cacheprovider
section "supernet vs standalone and vs DeiT-Tiny, bf16" \
    python scripts/bench_train.py --device cuda --bf16 --batch 256 --deit-batch 128 --reps 10 --archs 3
section "the same with torch.compile" \
    python scripts/bench_train.py --device cuda --bf16 --compile --batch 256 --deit-batch 128 --reps 10 --archs 3
section "a 1-epoch supernet on the bundled digits" bash -c \
    "start=\$(date +%s.%N); psvit-nas train-supernet --config search_spaces/digits.yaml --data digits \
     --epochs 1 --out $tmp/sn && python -c \"print(f'wall {\$(date +%s.%N) - \$start:.1f} s')\""
{ echo "# GPU figures"; echo
  echo "Written by \`scripts/gpu_check.sh\` on **$device**, $(date -u +%Y-%m-%d), torch $(python -c 'import torch; print(torch.__version__)')."
  cat "$tmp/report.md"; } > "$out.tmp" && mv "$out.tmp" "$out"
echo "gpu_check: wrote $out ($device)"
