#!/usr/bin/env bash
# The bundled model's training run, as made on one H200 (see docs/model-card.md).
# Expects data/carry/{train.txt.xz,val.txt,tokenizer.json} (scripts/make_corpus.py + the tokenizer step).
# OUT: where logs and the checkpoint (as a tar split into 15 MB parts) go; default runs/out.
set -o pipefail
OUT=${OUT:-runs/out}; mkdir -p "$OUT" runs; OUT=$(cd "$OUT" && pwd)
export PYTHONPATH=python PYTHONUNBUFFERED=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/env.txt"
$PY -c 'import torch,tokenizers;print("torch",torch.__version__,"tokenizers",tokenizers.__version__)' | tee -a "$OUT/env.txt"
$PY -m mmfree.train --train-data data/carry/train.txt.xz --val-data data/carry/val.txt \
    --tokenizer data/carry/tokenizer.json --out runs/bundled \
    --hidden-size 512 --layers 6 --seq-len 512 --batch-size 64 \
    --max-steps 100000 --time-budget "${BUDGET:-400}" --lr 3e-3 --warmup-steps 150 --min-lr-ratio 0.1 \
    --weight-decay 0.1 --eval-every 250 --eval-windows 64 --log-every 25 --save-every 0 --compile \
    2>&1 | tee "$OUT/train.log"
$PY scripts/eval_and_sample.py runs/bundled --val data/carry/val.txt --seq-len 512 --json "$OUT/eval.json" \
    2>&1 | tee "$OUT/eval.log"
(cd runs && tar cf - --exclude=training_state.pt bundled | split -b 15m - "$OUT/bundled.tar.part-")
ls -la "$OUT"
