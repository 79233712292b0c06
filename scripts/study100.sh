#!/usr/bin/env bash
# The second ground truth (issue 33): the ranking study on all 100 classes of Tiny-ImageNet-100 (35,000 training
# images after --gt-holdout 150 moves 15,000 into the 20,000 evaluation images), beside the 30-class settled study.
#
# The schedule: E = 8 epochs. A retraining then forwards 8 x 35,000 = 280,000 training images, about what one
# 30-class retraining of the settled study forwards (30 x 10,500 = 315,000). Every architecture here was retrained
# in the 30-class studies, so the plan's hours come from their measured minutes (scaled by 0.89, the ratio of
# images, training and evaluation alike): 4.6 h of retrainings and probes at 2 trials at once, plus the supernet.
# The learning curve that checks E: 6 spread architectures retrained for E/2 = 4 epochs (the probe), their order
# against the 8-epoch one, and every run's per-epoch curve.
# The supernet: 25 uniform-path epochs of its 48,500 images = 1.21 M images, 4.3x one retraining (the nearest
# multiple of 5 epochs to 4x, so that its checkpoints fall at every 20 % of the schedule: --score-every 5).
#
# Resumable: rerun the same command after a kill; finished jobs are kept. Run it in the background:
#     nohup bash scripts/study100.sh > runs/study100.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/tiny-imagenet-100}"
settled=docs/study-settled/records
arch() { python -c "import json,sys; print(json.load(open(sys.argv[1]))['arch'])" "$1"; }
exec psvit-nas study --config search_spaces/tiny_imagenet.yaml --data "$data" --classes 100 \
    --out docs/study-100 --work runs/study-100 --results docs/results-100.md \
    --gt-holdout 150 --epochs 8 --spread 12 --window 0 --family 1 2 3 4 5 6 \
    --extra "settled_evolution=$(arch $settled/retrain-winner-evolution-seed0.json)" \
            "settled_finalized=$(arch $settled/retrain-finalized-seed0.json)" \
    --seeds 0 1 --probe-archs 6 --probe-epochs 4 \
    --supernet-epochs 25 --score-every 5 --samplers uniform \
    --stages fitness retrain probe rankers --est-images-per-s 294 "${@:2}"
