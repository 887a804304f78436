#!/usr/bin/env bash
# The demo: train a small codec on CPU, code a held-out clip, report how it sounds.
#   bash recipes/demo/run.sh                 # on the built-in generated corpus
#   DATA=/path/to/audio bash recipes/demo/run.sh
# Stages: 1 train (generates the corpus when DATA is unset), 2 encode + decode a held-out clip,
# 3 report (bitrate, SI-SDR, mel distance, spectrogram PNG). STAGE=2 starts at stage 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUN=${RUN:-runs/demo}
STAGE=${STAGE:-1}
OUT=$RUN/demo
mkdir -p "$OUT"

if [ "$STAGE" -le 1 ]; then
  echo "== stage 1: train (run folder $RUN)"
  data_args=()
  if [ -n "${DATA:-}" ]; then data_args=(data=folder "data.root=$DATA" data.batch_size=8 data.num_workers=0); fi
  $PY -m codec.cli train experiment=demo "run_dir=$RUN" trainer.threads=2 "${data_args[@]}"
fi

if [ "$STAGE" -le 2 ]; then
  echo "== stage 2: encode and decode a held-out clip"
  CLIP=$($PY scripts/heldout.py "$RUN" --limit 1)
  cp "$CLIP" "$OUT/original.wav"
  $PY -m codec.cli encode "$OUT/original.wav" -m "$RUN/model" -o "$OUT/clip.codes" --force --quiet
  $PY -m codec.cli decode "$OUT/clip.codes" -m "$RUN/model" -o "$OUT/decoded.wav" --force --quiet
fi

echo "== stage 3: report"
$PY recipes/demo/report.py "$RUN" "$OUT/original.wav" "$OUT/clip.codes" "$OUT/decoded.wav"
