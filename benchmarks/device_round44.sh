#!/usr/bin/env bash
# Session 17, first call: more of the next tile a tile ahead in the compact loads' registers (mma_compact levels 2:
# and the value words, 3: and the value scales and mins, with no L2 prefetch left), the prefetch skipping the lines
# held ahead (level 1 against its session-16 prefetch of all 24 lines), at caps 168-216, against "auto" and the bulk
# without compact loads, from CUDA graphs; Nsight on level 3 at 8x32K; the GPU tests of the compact loads.
#   OUT=dir LIMIT=s bash benchmarks/device_round44.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-580}
export REPEAT=2
variants large_8b 250 --graph --shape llama3.1-8b --rows 8x32768,16x16384,64x4096,128x4096 \
    --variants auto,gqa_mma_noc,gqa_mma_c1,gqa_mma_c1_pfall,gqa_mma_c2,gqa_mma_c3,gqa_mma_c3_r168,gqa_mma_c3_r200,gqa_mma_c3_r216,gqa_mma_c2_r200
variants small_8b 70 --graph --shape llama3.1-8b --rows 1x32768,2x16384,4x32768 \
    --variants auto,gqa_mma_noc,gqa_mma_c1,gqa_mma_c3,gqa_mma_c3_r168
variants rows_70b 60 --graph --shape llama3.1-70b --rows 8x32768,64x4096,128x4096 \
    --variants auto,gqa_mma_c1,gqa_mma_c3,gqa_mma_c3_r200
named_gpu_tests 90 tests/test_kernels_decode_attention_gqa.py -k "compact"
with_ncu && ncu_main c3_8x32k 8x32768 gqa_mma_c3
echo "done at ${SECONDS}s"
