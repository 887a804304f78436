#!/usr/bin/env bash
# speech16k: a 16 kHz speech codec on real speech, 1.5 / 3 / 6 / 12 kbps.
#   bash recipes/speech16k/run.sh                       # CPU configuration (2 cores, ~1 hour)
#   CONFIG=gpu bash recipes/speech16k/run.sh            # full size on a GPU (DEVICE=cuda)
#   DATA=/path/to/speech bash recipes/speech16k/run.sh  # any folder instead of the default corpus
# Stages (STAGE=N starts at N, LAST=N stops after N; default 0 to 3): 0 prepare, 1 train,
# 2 evaluate against Opus, 3 tokenize; and only when asked (LAST=4, or STAGE=4), 4 evaluate
# out-of-domain speech against Opus (needs ktuberling-data klettres-data and FSDD_ROOT).
# The default corpus is ~3 h of Czech and Dutch game dialogue that Debian/Ubuntu ship:
#   sudo apt-get install fillets-ng-data-cs fillets-ng-data-nl opus-tools
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CONFIG=${CONFIG:-cpu}
RUN=${RUN:-runs/speech16k_$CONFIG}
CORPUS=${DATA:-${CORPUS:-data/speech16k}}   # DATA is used in place
STAGE=${STAGE:-0}
LAST=${LAST:-3}
if [ "$STAGE" -gt "$LAST" ]; then LAST=$STAGE; fi
if [ "$CONFIG" = gpu ]; then DEVICE=${DEVICE:-cuda}; else DEVICE=${DEVICE:-cpu}; fi  # stages 2, 3
EXTRA=("$@")   # more Hydra overrides for stage 1, e.g. trainer.steps=2000

if [ "$STAGE" -le 0 ] && [ "$LAST" -ge 0 ]; then
  echo "== stage 0: prepare the corpus in $CORPUS"
  if [ -z "${DATA:-}" ]; then $PY recipes/speech16k/prepare_fillets.py "$CORPUS"; fi
fi

if [ "$STAGE" -le 1 ] && [ "$LAST" -ge 1 ]; then
  echo "== stage 1: train ($CONFIG configuration, run folder $RUN; the same command resumes)"
  $PY -m codec.cli train "experiment=speech16k_$CONFIG" "data.root=$CORPUS" "run_dir=$RUN" \
    trainer.progress=false "${EXTRA[@]}"
fi

if [ "$STAGE" -le 2 ] && [ "$LAST" -ge 2 ]; then
  echo "== stage 2: evaluate the held-out split at 1.5 / 3 / 6 / 12 kbps, Opus alongside"
  $PY scripts/heldout.py "$RUN" > "$RUN/eval_files.txt"   # the trainer's heldout.txt list
  $PY -m codec.cli eval -m "$RUN/model" --files-from "$RUN/eval_files.txt" \
    --bandwidths 1.5 3 6 12 --compare opus -o "$RUN/eval" --device "$DEVICE" --quiet
fi

if [ "$STAGE" -le 3 ] && [ "$LAST" -ge 3 ]; then
  echo "== stage 3: tokenize the corpus at 6 kbps"
  $PY -m codec.cli tokenize "$CORPUS" -r -m "$RUN/model" -b 6 -o "$RUN/tokens" --device "$DEVICE" --quiet
fi

if [ "$STAGE" -le 4 ] && [ "$LAST" -ge 4 ]; then
  echo "== stage 4: evaluate out-of-domain speech at 1.5 / 3 / 6 / 12 kbps, Opus alongside"
  OOD_LIST=recipes/speech16k/results/ood_files.txt   # the fixed list the README's figures use
  $PY recipes/speech16k/prepare_ood.py data/ood16k --list "$RUN/ood_files.txt"
  cmp -s "$RUN/ood_files.txt" "$OOD_LIST" ||
    echo "note: the installed packages give another subset than $OOD_LIST; evaluating $OOD_LIST" >&2
  $PY -m codec.cli eval -m "$RUN/model" --files-from "$OOD_LIST" \
    --bandwidths 1.5 3 6 12 --compare opus -o "$RUN/eval_ood" --device "$DEVICE" --quiet
fi
