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
# gpu_tests N: the GPU tests of kernels, quant-pack, static step, engine and end to end (xdist if there),
# at most N seconds of what is left; log in $OUT/gpu_tests.log
gpu_tests() {
  local xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n "${XDIST:-8}")
  timeout "$(left "$1")" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" \
      tests/test_kernels_decode_attention.py tests/test_kernels_decode_attention_gqa.py tests/test_kernels_quant_pack.py \
      tests/test_kernels_static_step.py \
      tests/test_engine.py tests/test_gpu_e2e.py 2>&1 | tee "$OUT/gpu_tests.log" | grep -v Warn | tail -6
  echo "gpu tests exit: ${PIPESTATUS[0]} at ${SECONDS}s"
}
# named_gpu_tests N FILE...: the GPU tests of those files (xdist if there), at most N seconds of what is left, each
# result named (-v) so that a cut run still says which failed; failures in $OUT/gpu_tests.log, the summary printed
named_gpu_tests() {
  local n=$1; shift
  local xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n 8)
  timeout "$(left "$n")" python3 -m pytest -m gpu -v -p no:cacheprovider "${xd[@]}" -rf --tb=short "$@" 2>&1 \
      | grep -v -e Warn -e warner -e PASSED -e SKIPPED > "$OUT/gpu_tests.log"
  echo "gpu tests exit: ${PIPESTATUS[0]} at ${SECONDS}s"
  grep -E "FAILED|ERROR|passed|failed" "$OUT/gpu_tests.log" | tail -12
}
# kernel_tests K N: the decode-attention GPU tests matching -k K (xdist if there), at most N seconds of what
# is left; log in $OUT/gpu_tests.log
kernel_tests() {
  local xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n "${XDIST:-8}")
  timeout "$(left "$2")" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" -k "$1" \
      tests/test_kernels_decode_attention.py 2>&1 | tee "$OUT/gpu_tests.log" | grep -v Warn | tail -5
  echo "gpu tests exit: ${PIPESTATUS[0]} at ${SECONDS}s"
}
# sweep ROWS VARIANTS N: bench_v3_variants.py over those rows and variants, at most N seconds of what is
# left; log in $OUT/variants.log (table and JSON: $OUT/v3_variants.json)
sweep() {
  timeout "$(left "$3")" python3 benchmarks/bench_v3_variants.py --rows "$1" --variants "$2" 2>&1 \
      | tee "$OUT/variants.log" | grep -v Warning
  echo "sweep done at ${SECONDS}s"
}
# ncu_v3 N "NCU OPTIONS" ROW [KW ...]: Nsight Compute on one warm call (benchmarks/ncu_v3.py ROW KW...; KERNEL, a
# regex, names the kernel: default the v3 one), at most N seconds of what is left; with_ncu: whether ncu is there and
# NO_NCU is unset
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
with_ncu() { [ -n "$NCU" ] && [ -z "${NO_NCU:-}" ]; }
ncu_v3() {
  local n=$1 opts=$2; shift 2
  # shellcheck disable=SC2086  # the options are words
  timeout "$(left "$n")" "$NCU" --clock-control none -k "regex:${KERNEL:-_decode_attn_v3}" --launch-skip 2 \
      --launch-count 1 $opts python3 benchmarks/ncu_v3.py "$@"
}
# ncu_main TAG ROW VARIANT [SHAPE]: ncu_v3 on the GQA kernel (main sections, at most 60 s of what is left) into
# $OUT/ncu_TAG.txt, and its headline lines printed
ncu_main() {
  local S="--section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats"
  S+=" --section SchedulerStats --section LaunchStats"
  KERNEL=_decode_attn_gqa_kernel ncu_v3 60 "$S" "$2" shape="${4:-llama3.1-8b}" variant="$3" > "$OUT/ncu_$1.txt" 2>&1
  echo "ncu exit: $? at ${SECONDS}s"
  grep -E "Duration|DRAM Throughput|L1/TEX Hit|L2 Hit|L1/TEX Cache|L2 Cache Throughput|Achieved Active|Warp Cycles Per Issued|Registers Per|Shared Memory Configuration|Grid Size" \
      "$OUT/ncu_$1.txt"
}
# variants TAG N ARGS...: bench_v3_variants.py ARGS (every variant timed REPEAT times in turn, default 1), at most N
# seconds of what is left; the table on stdout (the device returns at most 8 files), the JSON as $OUT/TAG.json
variants() {
  local tag=$1 n=$2; shift 2
  timeout "$(left "$n")" python3 benchmarks/bench_v3_variants.py --repeat "${REPEAT:-1}" "$@" 2>&1 \
      | grep -v -e Warning -e "copy bandwidth"
  mv "$OUT/v3_variants.json" "$OUT/$tag.json" 2>/dev/null
  echo "$tag done at ${SECONDS}s"
}
