#!/usr/bin/env bash
# Session 12, call 2: the GQA tensor-core bulk with its value loads where ptxas puts them ("late": round 23's
# best, 142.7-296.3 us on Llama-3.1-8B) at caps down to 112 (16 programs an SM at 128, no spills in the loop),
# the window's split first in the grid, split targets, two warps. Sweeps (8B, 70B), batch 1 from CUDA graphs,
# the default table against fp16 SDPA, then the GQA GPU tests.
#   OUT=dir bash benchmarks/device_round24.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-580}
V8="gqa_mma,gqa_mma_r112_late,gqa_mma_r144_late,gqa_mma_r168_late,gqa_mma_r255_late,gqa_mma_r255_early"
V8="$V8,gqa_mma_r128_early,gqa_mma_r128_late_restlast,gqa_mma_r128_late_p1024,gqa_mma_r128_late_p1536"
V8="$V8,gqa_mma_r128_late_p3072,gqa_mma_r128_late_p4096,gqa_mma_r128_late_w2"
variants() {  # variants TAG N ARGS...: bench_v3_variants.py, at most N seconds; log and JSON under TAG
  local tag=$1 n=$2; shift 2
  timeout "$(left "$n")" python3 benchmarks/bench_v3_variants.py "$@" 2>&1 | tee "$OUT/$tag.log" | grep -v Warning
  cp "$OUT/v3_variants.json" "$OUT/$tag.json" 2>/dev/null
  echo "$tag done at ${SECONDS}s"
}
variants variants_8b 230 --shape llama3.1-8b --rows 8x32768,64x4096,16x16384,128x4096 --variants "$V8"
variants variants_70b 100 --shape llama3.1-70b --rows 8x32768,64x4096,128x4096 --variants \
    gqa_mma,gqa_mma_r168_late,gqa_mma_r255_late,gqa_mma_r255_early,gqa_mma_r128_late_restlast,gqa_mma_r128_late_p4096
variants graph_8b 50 --graph --shape llama3.1-8b --rows 1x32768,2x16384,1x4096,1x512 --variants \
    gqa_mma,gqa_mma_r255_early,gqa_mma_r128_late_restlast
timeout "$(left 80)" python3 benchmarks/bench_decode_attention.py --shapes llama3.1-8b \
    --rows 8x32768,16x16384,64x4096,128x4096,1x32768,1x512 --impl gqa 2>&1 \
    | tee "$OUT/bench_gqa_8b.log" | grep -v Warning | tail -9
cp "$OUT/bench_decode_attention.json" "$OUT/bench_gqa_8b.json" 2>/dev/null
echo "8b bench done at ${SECONDS}s"
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n 8)
timeout "$(left 110)" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" \
    tests/test_kernels_decode_attention_gqa.py 2>&1 | tee "$OUT/gpu_tests.log" | grep -v Warn | tail -8
echo "done at ${SECONDS}s"
