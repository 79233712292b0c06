#!/usr/bin/env bash
# The search as a user runs it, for the front against the all-`layer` family (issue 32): train-supernet with
# the shipped defaults, one `evolve --strategy nsga2` over the whole MACs range, then a `finalize --flops B`
# per budget, each ending in one delivered model. Everything trains on the study's ground-truth folder
# (whose training split lacks the study's evaluation images) and scores on held-out training images only:
# nothing here reads a validation split. Each step is skipped when its result exists, so a killed run
# continues where it stopped.
#     bash scripts/front.sh DATA WORK [BUDGET...]     (ascending; default 5M 8M 13M; the last caps the search)
# e.g. bash scripts/front.sh runs/study-pareto/data-30classes-gt150 runs/front
# then retrain the delivered models with the study (see docs/results.md, "The search's front"):
#     psvit-nas study ... --extra front-5M=WORK/finalize-5M/final.yaml ... --named-seeds 0 1 2 3
set -euo pipefail
cd "$(dirname "$0")/.."
data="$1"; work="$2"; shift 2
budgets=("${@:-5M 8M 13M}")
read -r -a budgets <<< "${budgets[*]}"
space=search_spaces/tiny_imagenet.yaml
mkdir -p "$work"
step() {  # folder, command...: run the command unless it completed before (resume a partial folder)
    local folder="$1"; shift
    if [[ -e "$folder.done" ]]; then echo "== $folder: done before, skipped"; return; fi
    echo "== $*"
    if [[ -d "$folder" ]]; then "$@" --resume; else "$@"; fi
    touch "$folder.done"
}
step "$work/supernet" psvit-nas train-supernet --config "$space" --data "$data" --out "$work/supernet"
step "$work/search" psvit-nas evolve --supernet "$work/supernet/last.pt" --strategy nsga2 \
    --flops "${budgets[-1]}" --out "$work/search"
for b in "${budgets[@]}"; do
    step "$work/finalize-$b" psvit-nas finalize --search "$work/search" --flops "$b" --out "$work/finalize-$b"
done
for b in "${budgets[@]}"; do
    echo "$b: $(grep -m1 '^arch' "$work/finalize-$b/final.yaml" 2>/dev/null || echo missing)"
done
