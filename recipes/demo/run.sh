#!/usr/bin/env bash
# The demo (make demo): real speech coded by the shipped model beside Opus, then a small codec
# trained from scratch for about a minute.
#   bash recipes/demo/run.sh            # STAGE=2 starts at stage 2, STAGE=3 at stage 3
#   TRAIN_ARGS="trainer.steps=2000" bash recipes/demo/run.sh   # Hydra overrides for stage 3
# Stages: 1 encode the clips in recipes/demo/speech with the shipped speech16k model at 6 kbps
# and decode them (the .codes files name their model), 2 report them beside Opus at 6 kbps
# (metrics, wavs, spectrograms), 3 train a small codec from scratch (the validation mel
# distance before and after). Everything is written under runs/demo (RUN=DIR elsewhere).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUN=${RUN:-runs/demo}
STAGE=${STAGE:-1}
KBPS=6
SPEECH=recipes/demo/speech
mkdir -p "$RUN"

if [ "$STAGE" -le 1 ]; then
  echo "== stage 1: codec encode $SPEECH -m speech16k -b $KBPS, then codec decode"
  $PY -m codec.cli encode "$SPEECH" -m speech16k -b "$KBPS" -o "$RUN/codes" --force --quiet
  $PY -m codec.cli decode "$RUN/codes" -o "$RUN/decoded" --force --quiet
fi

if [ "$STAGE" -le 2 ]; then
  echo "== stage 2: the decoded clips beside Opus at $KBPS kbps"
  $PY recipes/demo/report.py "$RUN" "$SPEECH"/*.flac --kbps "$KBPS"
fi

if [ "$STAGE" -le 3 ]; then
  echo "== stage 3: train a small codec from scratch (configs/experiment/demo.yaml) in $RUN/train"
  rm -rf "$RUN/train"  # a fresh run each time: its start is the untrained model
  # shellcheck disable=SC2086  # TRAIN_ARGS holds one override per word
  $PY recipes/demo/train.py "$RUN/train" ${TRAIN_ARGS:-}
fi
