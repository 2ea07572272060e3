#!/usr/bin/env bash
# Prepared in session 12, not yet run: the window's split on tensor cores (decode_attention_gqa REST_DOT, off
# until measured). The GQA GPU tests (rest_dot cases included), then batch 1 from CUDA graphs, where that split
# is the critical path (1x32K: 46.0 us on 8B, 74.0 on 70B, fp16 SDPA ~46), then the large-batch rows, with and
# without it and at the caps its spill-free rest may allow.
#   OUT=dir bash benchmarks/device_round26.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n 8)
timeout "$(left 120)" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" \
    tests/test_kernels_decode_attention_gqa.py "tests/test_kernels_decode_attention.py::test_gpu_no_dequantized_copy_in_memory" 2>&1 | tee "$OUT/gpu_tests.log" | grep -v Warn | tail -8
# The device returns at most 8 files: the tables go to stdout only, the JSON under TAG.
variants() {  # variants TAG N ARGS...: bench_v3_variants.py, at most N seconds; JSON under TAG
  local tag=$1 n=$2; shift 2
  timeout "$(left "$n")" python3 benchmarks/bench_v3_variants.py "$@" 2>&1 | grep -v Warning
  mv "$OUT/v3_variants.json" "$OUT/$tag.json" 2>/dev/null
  echo "$tag done at ${SECONDS}s"
}
for shape in llama3.1-8b llama3.1-70b; do
  variants "graph_$shape" 60 --graph --shape "$shape" --rows 1x32768,2x16384,1x8192 \
      --variants gqa_mma,gqa_mma_restdot,gqa_mma_r168_restdot
done
variants variants_8b 140 --shape llama3.1-8b --rows 8x32768,64x4096,16x16384,128x4096 \
    --variants gqa_mma,gqa_mma_restdot,gqa_mma_r128_restdot,gqa_mma_r168_restdot
variants variants_70b 110 --shape llama3.1-70b --rows 8x32768,64x4096,128x4096 \
    --variants gqa_mma,gqa_mma_restdot,gqa_mma_r128_restdot,gqa_mma_r168_restdot
echo "done at ${SECONDS}s"
