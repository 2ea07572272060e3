#!/usr/bin/env bash
# Session 9, call 2: v3 with the tensor-core bulk (decode_attention_mma: mma.sync from packed codes). Its GPU
# tests next to the packed path's, then the variants (warps, register caps, splits) against the packed path.
#   OUT=dir bash benchmarks/device_round13.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-500}
kernel_tests "mma or v3_packed" 150
sweep 8x32768,64x4096,128x4096,16x16384,1x32768 packed,mma,mma_w2,mma_w8,mma_r168,mma_r96,mma_S2x 300
echo "done at ${SECONDS}s"
