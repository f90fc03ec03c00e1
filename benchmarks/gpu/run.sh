#!/usr/bin/env bash
# The GPU check of issue 22, in one call (under 8 minutes on one GPU of the device image, whose
# python3 has JAX with CUDA, Flax, optax, chex, h5py and PyTorch with CUDA; no network):
#
#   1. the layer / nn tests on the device (a pytest selection; JAX places them on the GPU)
#   2. benchmarks/gpu/bench_gpu.py: jaxseq's LSTM / GRU layer against torch.nn.LSTM / GRU on
#      cuDNN and jax.experimental.rnn.lstm, and the language-model throughput (bench_lm.py)
#   3. a summary: every step's exit status and time, the device, the tables
#
# It runs on a CPU too: the CUDA contenders are skipped and the tables say so.
#
#   benchmarks/gpu/run.sh [--quick] [RESULTS_DIR]
#
# RESULTS_DIR: default $OUT when set (the device machine's folder that comes back), else
# benchmarks/results/gpu. --quick: one tiny test file selection and the benchmarks' quick mode
# (a smoke test of the script itself; tests/test_benchmarks.py runs it so on the CPU).
# Environment: PYTHON (default python3); EXTRA_SITE, a folder of pure-Python packages put on
# PYTHONPATH (pytest, hypothesis, when the image lacks them); TEST_TIMEOUT / BENCH_TIMEOUT
# seconds (defaults 200 / 230; quick 120 / 120); PYTEST_ARGS, the test selection;
# GPU_BENCH_ARGS, more options of bench_gpu.py (e.g. --skip-lm --kind lstm).
# Exit status: 0 when every step passed, else 1 (the summary names the failed steps).
set -u -o pipefail

QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RESULTS="${1:-${OUT:-$ROOT/benchmarks/results/gpu}}"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
PY="${PYTHON:-python3}"
cd "$ROOT"
export PYTHONPATH="$ROOT${EXTRA_SITE:+:$EXTRA_SITE}${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX and PyTorch share the GPU's memory
export PYTHONUNBUFFERED=1
export JAXSEQ_TESTS_XLA_FLAGS=""  # the tests compile as users do (tests/conftest.py otherwise lowers the optimisation)
SUMMARY="$RESULTS/summary.md"
FAILED=()
START=$(date +%s)

if [ "$QUICK" = 1 ]; then
    TEST_TIMEOUT="${TEST_TIMEOUT:-120}"; BENCH_TIMEOUT="${BENCH_TIMEOUT:-120}"
    DEFAULT_TESTS="tests/test_layers_rnn_lstm.py::test_forward_course_values"
    BENCH_FLAGS="--quick"
else
    TEST_TIMEOUT="${TEST_TIMEOUT:-200}"; BENCH_TIMEOUT="${BENCH_TIMEOUT:-230}"
    DEFAULT_TESTS="tests/test_layers_affine.py tests/test_layers_embedding.py tests/test_layers_loss.py tests/test_layers_rnn_lstm.py tests/test_layers_recurrent.py tests/test_nn_recurrent.py tests/test_nn_torch_parity.py tests/test_nn_torch_weights.py tests/test_nn_autodiff.py"
    BENCH_FLAGS=""
fi
PYTEST_ARGS="${PYTEST_ARGS:-$DEFAULT_TESTS}"

{
    echo "# benchmarks/gpu/run.sh $([ "$QUICK" = 1 ] && echo --quick)"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); host: $(hostname); load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
    echo "- git: $(git rev-parse --short HEAD 2>/dev/null || echo '(no git)') $(git status --porcelain 2>/dev/null | grep -q . && echo '(uncommitted changes)')"
    echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 | grep . || echo "none (no nvidia-smi or no device)")"
    "$PY" - <<'EOF' 2>&1 | sed 's/^/- /'
import importlib
for name in ("jax", "jaxlib", "flax", "optax", "chex", "h5py", "torch", "pytest", "hypothesis"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as error:
        print(f"{name} MISSING ({type(error).__name__})")
import jax
print(f"jax backend {jax.default_backend()}: {jax.devices()}")
try:
    import torch
    print(f"torch cuda: {torch.cuda.is_available()}" + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else " (no CUDA device: the CUDA contenders are skipped)"))
except ImportError:
    pass
EOF
    echo
} > "$SUMMARY"

step() {  # step NAME TIMEOUT LOGFILE COMMAND...: run one step, record its status and time
    local name="$1" limit="$2" log="$3"; shift 3
    local t0=$(date +%s) rc
    echo "== $name (limit ${limit} s)"
    timeout "$limit" "$@" > "$log" 2>&1; rc=$?
    tail -n 25 "$log"
    local dt=$(( $(date +%s) - t0 ))
    local verdict="passed"
    [ $rc = 124 ] && verdict="TIMED OUT"
    [ $rc != 0 ] && [ $rc != 124 ] && verdict="FAILED (exit $rc)"
    [ $rc != 0 ] && FAILED+=("$name")
    echo "- $name: $verdict in ${dt} s (log: $(basename "$log"))" >> "$SUMMARY"
    echo "== $name: $verdict in ${dt} s"
}

# 1. the tests, on the device JAX chose
if "$PY" -c "import pytest, hypothesis" 2>/dev/null; then
    # shellcheck disable=SC2086  # the selection is words
    step "tests" "$TEST_TIMEOUT" "$RESULTS/tests.log" "$PY" -m pytest -q -p no:cacheprovider -x $PYTEST_ARGS
else
    echo "- tests: SKIPPED: pytest or hypothesis is missing (give EXTRA_SITE, a folder holding them)" >> "$SUMMARY"
    FAILED+=("tests (pytest missing)")
fi

# 2. the benchmarks (CUDA contenders skipped without a GPU; the tables say so)
# shellcheck disable=SC2086
step "benchmarks" "$BENCH_TIMEOUT" "$RESULTS/bench.log" "$PY" benchmarks/gpu/bench_gpu.py $BENCH_FLAGS ${GPU_BENCH_ARGS:-} --out "$RESULTS"

{
    echo "- total: $(( $(date +%s) - START )) s"
    echo
    for table in "$RESULTS"/gpu*.md; do
        [ -f "$table" ] && { echo "## $(basename "$table")"; echo; cat "$table"; echo; }
    done
    grep -h "skipped" "$RESULTS/bench.log" 2>/dev/null | sort -u | sed 's/^/- /'
} >> "$SUMMARY"

echo "wrote $SUMMARY"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "run.sh: failed: ${FAILED[*]}" >&2
    exit 1
fi
exit 0
