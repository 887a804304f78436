#!/usr/bin/env bash
# general24k: an EnCodec-like 24 kHz codec (1.5 - 24 kbps) for speech, music and general audio.
#   DATA="/data/speech /data/music" bash recipes/general24k/run.sh          # your folders
#   FETCH="libritts-dev-clean fillets-music" bash recipes/general24k/run.sh # helpers (internet)
#   GPUS=8 ... to train with torchrun on 8 GPUs (default: every GPU nvidia-smi lists)
# Stages (STAGE=N starts at N): 0 prepare, 1 train, 2 evaluate, 3 tokenize. Stages 2 and 3 run
# on DEVICE: cuda where a GPU is listed, else cpu (as training falls back to).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUN=${RUN:-runs/general24k}
CORPUS=${CORPUS:-data/general24k}
STAGE=${STAGE:-0}
GPUS=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
if [ "$GPUS" -gt 0 ]; then DEVICE=${DEVICE:-cuda}; else DEVICE=${DEVICE:-cpu}; fi  # stages 2, 3
EXTRA=("$@")

if [ "$STAGE" -le 0 ]; then
  echo "== stage 0: prepare $CORPUS"
  mkdir -p "$CORPUS"
  for dir in ${DATA:-}; do ln -sfn "$(realpath "$dir")" "$CORPUS/$(basename "$dir")"; done
  for name in ${FETCH:-}; do $PY scripts/fetch_corpus.py "$name" "$CORPUS/$name"; done
  if [ -z "$(ls -A "$CORPUS")" ]; then
    echo "no data: set DATA to your folders or FETCH to corpus names (scripts/fetch_corpus.py)" >&2
    exit 2
  fi
fi

roots=$(find -L "$CORPUS" -mindepth 1 -maxdepth 1 -type d | sort | paste -sd, -)
if [ "$STAGE" -le 1 ]; then
  echo "== stage 1: train on [$roots] with $GPUS GPU(s); the same command resumes"
  launcher=($PY -m codec.train)
  if [ "$GPUS" -gt 1 ]; then launcher=($PY -m torch.distributed.run --nproc_per_node "$GPUS" -m codec.train); fi
  "${launcher[@]}" experiment=general24k "data.root=[$roots]" "run_dir=$RUN" "${EXTRA[@]}"
fi

if [ "$STAGE" -le 2 ]; then
  echo "== stage 2: evaluate 100 held-out files at 1.5 / 3 / 6 / 12 / 24 kbps, Opus alongside"
  $PY scripts/heldout.py "$RUN" --limit 100 > "$RUN/eval_files.txt"   # from the trainer's heldout.txt
  $PY -m codec.cli eval -m "$RUN/model" --files-from "$RUN/eval_files.txt" \
    --bandwidths 1.5 3 6 12 24 --compare opus -o "$RUN/eval" --device "$DEVICE" --quiet
fi

if [ "$STAGE" -le 3 ]; then
  echo "== stage 3: tokenize at 6 kbps"
  IFS=, read -ra root_list <<< "$roots"   # the folders themselves: -r does not follow links
  $PY -m codec.cli tokenize "${root_list[@]}" -r -m "$RUN/model" -b 6 -o "$RUN/tokens" --device "$DEVICE" --quiet
fi
