#!/usr/bin/env bash
# Session 11, call 2: mma_shfl's register experiments (helper branch mma-vhalf): the query reloaded each tile
# (mma_qload: the hoisted query held 48 registers a lane, 25 of them spilled at cap 168) and the value phase as
# two 64-token passes (mma_vhalf), at caps 128 / 144 / 168 against the default (mma_sh_r168).
#   OUT=dir bash benchmarks/device_round19.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-400}
sweep 8x32768,64x4096,128x4096,16x16384 mma_sh_r168,mma_sh_q_r168,mma_sh_q_r144,mma_sh_vhq_r144,mma_sh_vhq_r128,mma_sh_vh2q_r144,mma_sh_vhq_r168 360
echo "done at ${SECONDS}s"
