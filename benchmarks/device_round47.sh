#!/usr/bin/env bash
# Session 17, fourth call: the bulk's own launch (the window's splits on theirs) at caps 144-168 with one wave of
# 12-14 programs an SM, from CUDA graphs.
#   OUT=dir LIMIT=s bash benchmarks/device_round47.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-300}
export REPEAT=2
V=auto; for r in 144 152 160 168; do for k in 12 13 14; do V+=",gqa_mma_sep_r${r}_w${k}"; done; done
variants sep_8b 200 --graph --shape llama3.1-8b --rows 8x32768,16x16384,32x8192 --variants "$V"
variants sep_70b 60 --graph --shape llama3.1-70b --rows 8x32768 --variants auto,gqa_mma_sep_r152_w13,gqa_mma_sep_r144_w14
echo "done at ${SECONDS}s"
