#!/usr/bin/env bash
# Session 10, call 5: the lean engine at each side's largest batch at ctx 4096 (KIVI-2 278, fp16 59, as
# device_engine_round7.sh) with mma_shfl as the default decode kernel; then caps and split targets around
# the new default (mma_sh_r168_Sh: 1024 programs; the default aims at 2048).
#   OUT=dir bash benchmarks/device_round17.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-480}
timeout "$(left 260)" python3 benchmarks/bench_engine.py kivi:278:4096 fp16:59:4096 2>&1 \
    | tee "$OUT/bench_engine_maxbatch.log" | grep -v Warning | tail -4
echo "engine exit: ${PIPESTATUS[0]} at ${SECONDS}s"
sweep 8x32768,64x4096,128x4096,16x16384 mma_sh_r168,mma_sh_r168_Sh,mma_sh_r160,mma_sh_r176,mma_sh_w1_r168 170
echo "done at ${SECONDS}s"
