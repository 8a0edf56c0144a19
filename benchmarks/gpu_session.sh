#!/usr/bin/env bash
# One command for a session on a GPU machine: install what is missing (keeping the machine's
# torch), print the versions and the GPU, run the GPU-only tests, run the benchmarks on CUDA,
# and put the results and the log into $OUT. Run from the repository root:
#
#   bash benchmarks/gpu_session.sh                # everything, within GPU_SESSION_BUDGET_S
#   GPU_SESSION_ONLY="ceiling overhead" bash benchmarks/gpu_session.sh   # some benchmarks
#
# No step stops the others: each runs under its own `timeout` (cut to what is left of the
# session budget, default 570 s: a device command may run at most 10 minutes), its exit code
# is collected, and a summary is printed at the end; the script exits non-zero if any failed.
# An offline machine installs the wheels in .whl/ (made beforehand on a machine with PyPI by
# `bash benchmarks/gpu_wheels.sh`, and carried along: the device tool's `carry: [".whl"]`,
# with `timeout_s: 600`); with network it uses
# `pip install -c requirements/constraints-keep-torch.txt -e ".[all,dev]"`.
#
# $OUT gets: session.log (everything printed), the results files this session wrote
# (benchmarks/results/<date>-<host>.json and .md), and gpu-session.tar.gz with the same plus
# one log per step and the tests' JUnit XML.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET_S=${GPU_SESSION_BUDGET_S:-570}
OUT=${OUT:-$PWD/outputs/gpu-session}
mkdir -p "$OUT"
LOGS=$(mktemp -d /tmp/gpu-session.XXXXXX)
LOG="$OUT/session.log"
: >"$LOG"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export WANDB_MODE=offline WANDB_SILENT=true
# In the order of what matters most: the issue's two GPU goals first, the compile benchmark
# (minutes of compiling from empty caches) last. `ceiling` runs at full size (17,000 JPEGs, 3
# epochs, its goal's setting); the others with --quick.
BENCHMARKS=${GPU_SESSION_ONLY:-"overhead ceiling step_tax demo pipeline device_defaults memory_format sweep_overhead memory latency compile"}
declare -A LIMIT=(
    [overhead]=90 [ceiling]=200 [step_tax]=60 [demo]=120 [pipeline]=120 [device_defaults]=60
    [memory_format]=75
    [sweep_overhead]=90 [memory]=90 [latency]=45 [compile]=180
)
SUMMARY=()
FAILED=0

say() { echo "$*" | tee -a "$LOG"; }

# step NAME LIMIT_S COMMAND...: run with a timeout cut to the budget left; record its rc.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET_S - ($(date +%s) - START)))
    if ((left < 15)); then
        SUMMARY+=("$(printf '%-22s skipped: the session budget (%ss) is spent' "$name" "$BUDGET_S")")
        FAILED=1
        return
    fi
    ((limit > left - 5)) && limit=$((left - 5))
    say "=== $name (timeout ${limit}s, $(date -u +%H:%M:%S)) ==="
    local t0 rc
    t0=$(date +%s)
    # through bash -c: timeout runs programs, and the steps are this script's functions
    timeout -k 5 "$limit" bash -c '"$@"' _ "$@" 2>&1 | tee "$LOGS/$name.log" | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    local verdict="ok"
    ((rc == 124 || rc == 137)) && verdict="TIMED OUT"
    ((rc != 0 && rc != 124 && rc != 137)) && verdict="FAILED"
    ((rc != 0)) && FAILED=1
    SUMMARY+=("$(printf '%-22s rc=%-3s %4ss  %s' "$name" "$rc" "$(($(date +%s) - t0))" "$verdict")")
}

install() {
    if $PY -c "import hydra, omegaconf, ptflops, wandb, lightning, torchmetrics, torchvision" 2>/dev/null; then
        echo "every package the project imports is there; nothing installed"
        return 0
    fi
    if [ -d .whl ]; then
        # offline: only the missing packages, into their own folder, so nothing there changes
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl || return 1
        export PYTHONPATH="$PYTHONPATH:/tmp/site"
        echo "PYTHONPATH=$PYTHONPATH" >"$LOGS/pythonpath"
    else
        $PY -m pip install -c requirements/constraints-keep-torch.txt -e ".[all,dev]" || return 1
    fi
    if ! $PY -c "import torchvision" 2>/dev/null; then
        # torchvision 0.(N+15) pairs with torch 2.N; --no-deps keeps the machine's torch
        local minor
        minor=$($PY -c "import torch; print(int(torch.__version__.split('.')[1]) + 15)")
        $PY -m pip install --no-deps "torchvision==0.${minor}.*" || return 1
    fi
    $PY -c "import hydra, omegaconf, ptflops, wandb, lightning, torchmetrics, torchvision"
}

versions() {
    $PY - <<'EOF'
import platform, os, torch, torchvision, lightning, torchmetrics, hydra, omegaconf
print("python", platform.python_version(), "| cores", os.cpu_count())
for m in (torch, torchvision, lightning, torchmetrics, hydra, omegaconf):
    print(m.__name__, m.__version__)
print("cuda", torch.version.cuda, "| cudnn", torch.backends.cudnn.version(),
      "| available", torch.cuda.is_available(),
      "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
EOF
    nvidia-smi
}

gpu_tests() {
    # The GPU-only tests are named *cuda* and skip without a GPU; only the files that hold such
    # tests are collected, so packages other test files import (streamlit, ...) are not needed.
    local files
    files=$(grep -l "cuda.is_available" tests/*.py tests/*/*.py 2>/dev/null | tr '\n' ' ')
    echo "test files with GPU-only tests: $files"
    # shellcheck disable=SC2086
    $PY -m pytest -q -rs -m "not slow" -k cuda -p no:cacheprovider \
        --junitxml="$LOGS/gpu-tests.xml" $files
}

benchmark() {
    local name=$1 quick=--quick
    [ "$name" = ceiling ] && quick=""
    $PY -m benchmarks.run --device cuda $quick --only "$name"
}

export PY LOGS
export -f install versions gpu_tests benchmark
step install 120 install
[ -f "$LOGS/pythonpath" ] && export "$(cat "$LOGS/pythonpath")"
step versions 30 versions
step gpu_tests 150 gpu_tests
for name in $BENCHMARKS; do
    step "bench_$name" "${LIMIT[$name]:-120}" benchmark "$name"
done

# Results this session wrote (today's file is rewritten after every benchmark).
find benchmarks/results -maxdepth 1 \( -name '*.json' -o -name '*.md' \) -newermt "@$START" \
    -exec cp {} "$OUT"/ \; -exec cp {} "$LOGS"/ \;
say ""
say "=== summary ($(($(date +%s) - START)) s of ${BUDGET_S} s) ==="
for line in "${SUMMARY[@]}"; do say "$line"; done
say "results in \$OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
tar -czf "$OUT/gpu-session.tar.gz" -C "$LOGS" . 2>/dev/null
exit "$FAILED"
