#!/usr/bin/env bash
# Session 19, fourth call: v1's tile loops at 1 / 2 software-pipelining stages against Triton's default 3 (60 cp.async
# a program at 3: a one-tile program stages its loads through shared memory for nothing) on short calls, both shapes,
# from CUDA graphs; then the decode-attention file's GPU tests at 1 stage.
#   OUT=dir LIMIT=s bash benchmarks/device_round59.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-400}
export REPEAT=4
variants stages_7b 90 --graph --shape llama2-7b --rows 1x512,1x1024,2x512 --variants auto,auto_v1st1,auto_v1st2
variants stages_8b 90 --graph --shape llama3.1-8b --rows 1x512,1x1024,1x2048 --variants auto,auto_v1st1,auto_v1st2
echo "done at ${SECONDS}s"
