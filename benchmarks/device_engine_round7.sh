#!/usr/bin/env bash
# Engine after kernel round 7 (issue 6): the lean loop at each side's measured batch at ctx 4096 (KIVI-2 278,
# fp16 59: 5% under the exact largest batches 293 / 63 of h200_engine_round5; the cache sizes did not
# change since) and batch 1 x 512, twice each side.
#   OUT=dir bash benchmarks/device_engine_round7.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-400}
timeout "$(left 260)" python3 benchmarks/bench_engine.py kivi:278:4096 fp16:59:4096 2>&1 \
    | tee "$OUT/bench_engine_maxbatch.log" | grep -v Warning | tail -4
mv "$OUT/bench_engine.json" "$OUT/bench_engine_maxbatch.json" 2>/dev/null; echo "max batch done at ${SECONDS}s"
timeout "$(left 120)" python3 benchmarks/bench_engine.py kivi:1:512 fp16:1:512 kivi:1:512 fp16:1:512 2>&1 \
    | tee "$OUT/bench_engine_b1.log" | grep -v Warning | tail -6
mv "$OUT/bench_engine.json" "$OUT/bench_engine_b1.json" 2>/dev/null; echo "done at ${SECONDS}s"
