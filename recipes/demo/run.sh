#!/usr/bin/env bash
# The demo (make demo): real speech coded by the shipped model and scored beside Opus, then the
# shipped model adapted to a voice it has not heard, with held-out quality before and after.
#   bash recipes/demo/run.sh            # STAGE=2 starts at stage 2, STAGE=3 at stage 3
#   ADAPT_ARGS="trainer.steps=200" bash recipes/demo/run.sh   # Hydra overrides for stage 3
#   DEMO_METRICS="pesq stoi" bash recipes/demo/run.sh     # only these optional scores (default all)
# Stages: 1 encode the clips in recipes/demo/speech with the shipped speech16k model at 6 kbps
# and decode them (the .codes files name their model), 2 `codec eval` of those clips beside Opus
# at 6 and 8 kbps (scores, Opus-equivalent bitrates, spectrograms), 3 adapt speech16k to
# recipes/demo/voice/train and score recipes/demo/voice/heldout before and after.
# Everything is written under runs/demo (RUN=DIR elsewhere).
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
  echo "== stage 2: codec eval $SPEECH -m speech16k -b $KBPS beside Opus at 6 and 8 kbps"
  COMPARE=(--compare opus --opus-kbps 6 8)
  if ! command -v opusenc >/dev/null || ! command -v opusdec >/dev/null; then
    echo "note: no Opus comparison: opusenc and opusdec not found (Debian/Ubuntu: apt-get" \
      "install opus-tools; macOS: brew install opus-tools)"
    COMPARE=()
  fi
  # shellcheck disable=SC2086  # DEMO_METRICS holds one name per word
  $PY -m codec.cli eval "$SPEECH" -m speech16k --bandwidths "$KBPS" "${COMPARE[@]}" \
    ${DEMO_METRICS:+--metrics $DEMO_METRICS} -o "$RUN/eval" --quiet
fi

if [ "$STAGE" -le 3 ]; then
  echo "== stage 3: adapt speech16k to a voice it has not heard (configs/experiment/adapt.yaml)"
  rm -rf "$RUN/adapt"  # a fresh run each time: its start is the shipped model
  # shellcheck disable=SC2086  # ADAPT_ARGS holds one override per word
  $PY recipes/demo/adapt.py "$RUN/adapt" trainer.progress=false ${ADAPT_ARGS:-}
fi
