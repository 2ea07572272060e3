#!/usr/bin/env bash
# Session 17, last call: the lazy rescaling's threshold (MMA_LAZY_RESCALE 2 / 4 / 8, 0: every tile), from CUDA graphs.
# Its p reach 2^TAU, and the value MMAs' B is p * scale in fp16, so a lower threshold keeps that product finite for
# larger value scales (below 65504 / 2^TAU).
#   OUT=dir LIMIT=s bash benchmarks/device_round49.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-200}
export REPEAT=3
variants tau_8b 150 --graph --shape llama3.1-8b --rows 8x32768,16x16384,32x8192,1x32768 \
    --variants auto_tau8,auto_tau4,auto_tau2,auto_tau0
echo "done at ${SECONDS}s"
