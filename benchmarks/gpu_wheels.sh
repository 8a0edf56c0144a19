#!/usr/bin/env bash
# Download, on a machine with PyPI access, the wheels an offline GPU machine lacks to run this
# project, into .whl/ (ignored by git), for benchmarks/gpu_session.sh to install there.
#
#   bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]     # default 3.12, the GPU image's python3
#
# The list is what the project needs and a GPU image with PyTorch, torchvision, Lightning,
# torchmetrics, ONNX Runtime and pytest lacks (measured: hydra-core, omegaconf, antlr4, ptflops
# and wandb with its own needs); versions come from requirements/constraints-keep-torch.txt.
# Only these are installed there, so the machine's torch and everything else it has stay.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-3.12}"
DEST=.whl
PACKAGES=(
    hydra-core omegaconf ptflops
    wandb cwevals platformdirs pydantic pydantic_core annotated-types typing-inspection
    opentelemetry-api opentelemetry-sdk opentelemetry-proto opentelemetry-semantic-conventions
    opentelemetry-exporter-otlp-proto-http opentelemetry-exporter-otlp-proto-common
    opentelemetry-exporter-http-transport opentelemetry-exporter-otlp-common
    googleapis-common-protos distro sniffio
)
pin() {  # NAME -> NAME==VERSION from the constraints file (names compared case- and _/- blind)
    local want
    want=$(echo "$1" | tr 'A-Z_' 'a-z-')
    grep -v '^#' requirements/constraints-keep-torch.txt |
        awk -F'==' -v w="$want" '{n=tolower($1); gsub("_","-",n); if (n==w) print $1"=="$2}'
}
mkdir -p "$DEST"
# ignored in this checkout and its worktrees, so the wheels are never committed
EXCLUDE="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx '/.whl/' "$EXCLUDE" 2>/dev/null || echo '/.whl/' >>"$EXCLUDE"
specs=()
for name in "${PACKAGES[@]}"; do
    spec=$(pin "$name")
    [ -n "$spec" ] || { echo "no pin for $name in requirements/constraints-keep-torch.txt" >&2; exit 1; }
    specs+=("$spec")
done
python3 -m pip download --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$DEST" "${specs[@]}"
# antlr4-python3-runtime (omegaconf's parser) is published as a source archive only; its
# wheel is pure Python, so one built here installs anywhere.
python3 -m pip wheel --no-deps -w "$DEST" "$(pin antlr4-python3-runtime)"
du -sh "$DEST"
ls "$DEST"
