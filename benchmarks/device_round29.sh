#!/usr/bin/env bash
# Ran as round 29 (h200_round29.md); the stages variants it names were removed with the options (commit c560313).
# Prepared in session 13, not yet run: software pipelining of the GQA kernel (decode_attention_gqa MMA_STAGES /
# REST_STAGES, Triton's cp.async stages). The bulk is latency-bound (33-38% of the copy bandwidth, one warp a
# program, one tile of loads in flight); stages 2 copy the next tile into shared memory while this one computes
# (759 instructions a tile instead of 609). The window's split with 1 stage takes the kernel's shared memory from
# 23 to 20 KB (9 -> 11 programs an SM). GQA GPU tests first (the stages cases), then the rows.
#   OUT=dir bash benchmarks/device_round29.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-540}
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n 8)
timeout "$(left 120)" python3 -m pytest -m gpu -q -p no:cacheprovider -rf --tb=short "${xd[@]}" \
    tests/test_kernels_decode_attention_gqa.py "tests/test_kernels_decode_attention.py::test_gpu_sparse_value_rows" \
    2>&1 | grep -v -e Warn -e warner > "$OUT/gpu_tests.log"
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/gpu_tests.log" | tail -8
V=gqa_mma,gqa_mma_st2,gqa_mma_st3,gqa_mma_rs1,gqa_mma_rs2,gqa_mma_st2_rs1,gqa_mma_st2_r255
variants variants_8b 150 --shape llama3.1-8b --rows 8x32768,64x4096,16x16384,128x4096 --variants "$V"
variants variants_70b 120 --shape llama3.1-70b --rows 8x32768,64x4096,128x4096 --variants "$V"
for s in 8b 70b; do
  variants "graph_$s" 50 --graph --shape "llama3.1-$s" --rows 1x32768,2x16384,1x8192 \
      --variants gqa_mma,gqa_mma_st2,gqa_mma_rs1,gqa_mma_st2_rs1
done
echo "done at ${SECONDS}s"
