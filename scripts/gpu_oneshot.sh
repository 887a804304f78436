#!/usr/bin/env bash
# GPU one-shot: everything this project checks and measures on a GPU, in one command of at most
# 8 minutes on a bare machine (an NVIDIA H200 with 16 CPU cores, torch 2.11 + CUDA, no network):
#   (a) nvidia-smi, torch / CUDA / cuDNN versions   (b) pytest -m cuda (tests/test_cuda.py)
#   (c) scripts/bench/bench_train.py on the GPU: speech16k GPU configuration and the frame-rate
#       experiment, float32, bfloat16, bfloat16 + torch.compile
#   (d) the speech16k GPU configuration trained on real speech for the time left, stopped by
#       the clock (SIGTERM: checkpoint and model written), then validated
#   (e) $OUT/gpu_results.md (summary), training.png and the logs: 8 files, each well under 16 MiB
# Each phase has a time cap; a phase that fails or runs out of time is recorded and the next
# one runs. STATUS: NOT RUN YET on a GPU (no GPU was lent to the session that wrote it); a
# dry run on CPU (`bash scripts/gpu_oneshot.sh dry-run`) passes.
#
# 1. Here, once (needs data/speech16k, see recipes/speech16k, and PyPI), in the repo root:
#      bash scripts/gpu_oneshot.sh prepare
#    It fills the ignored folder carry/: wheels of hydra-core, omegaconf, antlr4, soundfile,
#    cffi, pycparser for the GPU image's Python 3.12 (it lacks them), and carry/speech16k, 56 MiB
#    of 16 kHz FLAC (scripts/pack_corpus.py: 947 of the corpus's training files, 55 min; the
#    165 held-out files left out), and checks that what travels stays under 64 MiB.
# 2. The device tool's call (an assistant's `run`; command and carry exactly so):
#      run(command="bash scripts/gpu_oneshot.sh", carry=["carry"], timeout_s=540)
#    Results come back in $OUT: gpu_results.md, training.png, checks.log, bench.log,
#    bench.jsonl, train.log, metrics.jsonl, config.yaml.
#
# Settings (environment): BUDGET (s, default 450: the script ends by then), DEVICE (cuda),
# PY (python3), CARRY (carry), WORK (runs/gpu_oneshot; emptied first), OUT (WORK/out when
# unset), COMPILE_TRAIN=1 trains with torch.compile.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-run}
CARRY=${CARRY:-carry}
# Versions of the packages the GPU image lacks (those of the project's .venv when written).
WHEELS=(hydra-core==1.3.8 omegaconf==2.3.1 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12)
SDISTS=(antlr4-python3-runtime==4.9.3)  # no wheel on PyPI: built here (pure Python)
LIMIT_MIB=64

prepare() {
  local py=${PY:-.venv/bin/python}
  mkdir -p "$CARRY/wheels"
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$CARRY/wheels" "${WHEELS[@]}" || exit 1
  "$py" -m pip wheel -q --no-deps -w "$CARRY/wheels" "${SDISTS[@]}" || exit 1
  PYTHONPATH=$PWD "$py" scripts/pack_corpus.py "${CORPUS:-data/speech16k}" "$CARRY/speech16k" \
    --max-mib "${CORPUS_MIB:-56}" || exit 1
  local tree carry
  tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  carry=$(du -sb "$CARRY" | cut -f1)
  echo "travels: working tree $((tree / 1024)) KiB + $CARRY $((carry / 1024)) KiB" \
    "= $(((tree + carry) / 1048576)) MiB of $LIMIT_MIB"
  if [ $((tree + carry)) -gt $((LIMIT_MIB * 1048576)) ]; then
    echo "too large for the device tool: pack less (CORPUS_MIB=...)" >&2
    exit 1
  fi
}

if [ "$MODE" = prepare ]; then prepare; exit; fi
if [ "$MODE" = dry-run ]; then  # the whole script on this CPU at a test's sizes
  DEVICE=cpu
  BUDGET=${BUDGET:-480}
  WORK=${WORK:-runs/gpu_oneshot_dry}
  PY=${PY:-.venv/bin/python}
  THREADS=1
  BENCH_STEPS=3
  BENCH_SIZE=(data.batch_size=2 data.segment_seconds=0.25)
  TRAIN_SIZE=(data.batch_size=2 data.segment_seconds=0.25 data.num_workers=1 trainer.threads=1
    trainer.log_every=2 trainer.valid_every=6 trainer.valid_items=2 trainer.valid_seconds=1.0)
elif [ "$MODE" = run ]; then
  THREADS=8
  BENCH_STEPS=10
  BENCH_SIZE=()
  TRAIN_SIZE=(trainer.log_every=25 trainer.valid_every=250)
else
  echo "usage: bash scripts/gpu_oneshot.sh [run|prepare|dry-run]" >&2
  exit 2
fi
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-450}
PY=${PY:-python3}
WORK=${WORK:-runs/gpu_oneshot}
OUT=${OUT:-$WORK/out}
case "$WORK" in runs/*) rm -rf "$WORK" ;; *) echo "WORK must be under runs/" >&2; exit 2 ;; esac
mkdir -p "$WORK" "$OUT"
export PYTHONUNBUFFERED=1 CODEC_TEST_DEVICE=$DEVICE
CHECKS=$WORK/checks.log

left() { echo $((BUDGET - SECONDS)); }

# phase NAME CAP LOG COMMAND...: run COMMAND for at most CAP seconds (and never past the
# budget less RESERVE), SIGTERM at the cap, SIGKILL 30 s later; output appended to LOG. The
# signals go to COMMAND alone (--foreground), not to its DataLoader workers: the trainer stops
# on SIGTERM between steps, and workers killed under it would fail the fetch before that.
RESERVE=0
phase() {
  local name=$1 cap=$2 log=$3 t0=$SECONDS status
  shift 3
  if [ "$cap" -gt $(($(left) - RESERVE)) ]; then cap=$(($(left) - RESERVE)); fi
  if [ "$cap" -lt 5 ]; then
    echo "== $name: skipped, the time is up" | tee -a "$log"
    printf '%s\tskipped\t0\n' "$name" >>"$WORK/phases.tsv"
    return
  fi
  echo "== $name (at most $cap s; $(left) s left)" | tee -a "$log"
  timeout --foreground -k 30 "$cap" "$@" >>"$log" 2>&1
  status=$?
  printf '%s\t%s\t%s\n' "$name" "$status$([ $status = 124 ] && echo ' (time cap)')" \
    "$((SECONDS - t0))" >>"$WORK/phases.tsv"
  echo "   exit $status after $((SECONDS - t0)) s" | tee -a "$log"
}

# -- (a) the machine, and the packages the image lacks -------------------------------------------
{
  echo "== machine"
  date -u
  nvidia-smi || echo "nvidia-smi: not available"
  nproc
} >>"$CHECKS" 2>&1
if ! "$PY" -c "import hydra, omegaconf, soundfile" 2>/dev/null; then
  echo "== installing the carried wheels into /tmp/site" >>"$CHECKS"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$CARRY"/wheels/*.whl >>"$CHECKS" 2>&1 || echo "wheel install failed" >>"$CHECKS"
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
"$PY" - >"$WORK/versions.txt" 2>>"$CHECKS" <<'EOF'
import os, platform, subprocess
import torch
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, "
          f"compute capability {p.major}.{p.minor}, driver {smi or '?'}")
else:
    print("GPU: none seen by torch")
print(f"CPU cores: {os.cpu_count()}; Python {platform.python_version()}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
for name in ("torchaudio", "hydra", "omegaconf", "soundfile", "numpy"):
    try:
        module = __import__(name)
        extra = f" (libsndfile {module.__libsndfile_version__})" if name == "soundfile" else ""
        print(f"{name} {module.__version__}{extra}")
    except Exception as err:
        print(f"{name}: not importable ({err})")
EOF
cat "$WORK/versions.txt" >>"$CHECKS"

# -- (b) the CUDA tests ---------------------------------------------------------------------------
RESERVE=300  # keep time for the benchmark and the training
phase "pytest -m cuda" 90 "$WORK/pytest.log" \
  "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py
cat "$WORK/pytest.log" >>"$CHECKS"

# -- (c) training throughput ---------------------------------------------------------------------
bench() {  # bench NAME CAP BENCH_TRAIN_ARGS...
  local name=$1 cap=$2
  shift 2
  phase "bench $name" "$cap" "$WORK/bench.log" "$PY" scripts/bench/bench_train.py \
    --device "$DEVICE" --threads "$THREADS" --steps "$BENCH_STEPS" \
    --cases speech16k_gpu speech16k_istft --json "$WORK/bench.jsonl" "$@" \
    ${BENCH_SIZE[@]:+--override "${BENCH_SIZE[@]}"}
}
RESERVE=240
bench float32 50 --precision float32
RESERVE=210
bench bfloat16 50 --precision bfloat16
RESERVE=180
bench "bfloat16 + compile" 130 --precision bfloat16 --compile

# -- (d) speech16k GPU configuration on the carried speech, for the time left ---------------------
RESERVE=${TRAIN_RESERVE:-75}  # SIGKILL grace, final validation, report
phase "train speech16k_gpu" 100000 "$WORK/train.log" \
  "$PY" -m codec.cli train experiment=speech16k_gpu "data.root=$CARRY/speech16k" \
  "run_dir=$WORK/train" "trainer.device=$DEVICE" trainer.progress=false \
  trainer.tensorboard=false trainer.checkpoint_every=1000000 \
  "trainer.compile=$([ "${COMPILE_TRAIN:-0}" = 1 ] && echo true || echo false)" "${TRAIN_SIZE[@]}"
RESERVE=10
phase "final validation" 60 "$WORK/train.log" \
  bash -c "'$PY' scripts/gpu_report.py validate '$WORK/train' > '$WORK/final_valid.json'"

# -- (e) the summary and the logs in $OUT ---------------------------------------------------------
"$PY" scripts/gpu_report.py write --work "$WORK" --out "$OUT" --corpus "$CARRY/speech16k" \
  >>"$CHECKS" 2>&1 || echo "# GPU one-shot: the report failed, see checks.log" >"$OUT/gpu_results.md"
for file in checks.log bench.log bench.jsonl train.log train/metrics.jsonl train/config.yaml; do
  if [ -f "$WORK/$file" ]; then cp "$WORK/$file" "$OUT/"; fi
done
cat "$OUT/gpu_results.md"
echo "total $SECONDS s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
