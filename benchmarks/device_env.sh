# Sourced first by the device scripts (benchmarks/device_*.sh). The device image has no network and kivi
# is not installed there: kivi_core / kivi_cli / kivi_kernels become importable from this checkout through
# a folder of links on PYTHONPATH. Sets OUT (default benchmarks/results), records the versions there.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-benchmarks/results}
export OUT PYTHONUNBUFFERED=1
mkdir -p "$OUT"
shim=$(mktemp -d)
for p in kivi_core kivi_cli; do ln -s "$PWD/$p" "$shim/$p"; done
ln -s "$PWD/kernels" "$shim/kivi_kernels"
export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())" | tee "$OUT/versions.txt"
# left N: a step's timeout, N seconds or what is left of LIMIT (set by the script) if less, at least 5
left() { local l=$((LIMIT - SECONDS)); [ "$l" -gt "$1" ] && echo "$1" || echo $((l > 5 ? l : 5)); }
