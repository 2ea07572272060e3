#!/usr/bin/env bash
# Device call 2 of round 5: issue 6's engine (GPU tests, --find-max-batch at ctx 4096, batch-1 rows), then
# Nsight Compute on one v3 call (stall reasons, occupancy) and a short sweep of register caps. Each step
# gets what is left of LIMIT seconds (default 560), the most important first. Logs and JSON under $OUT.
#   OUT=dir bash benchmarks/device_round5b.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
timeout "$(left 120)" python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_engine.py 2>&1 \
    | tee "$OUT/engine_tests.log" | grep -v Warn | tail -4
timeout "$(left 330)" python3 -c "from kivi_cli.main import app; app()" profile --arch llama-2-7b \
    --ctx 4096 --gen 64 --bits 2 --find-max-batch --batch 62 --json > "$OUT/profile_maxbatch_ctx4096.json" 2> "$OUT/profile.err"
echo "profile exit: $? at ${SECONDS}s"; grep -v Warn "$OUT/profile.err" | tail -30; head -c 2500 "$OUT/profile_maxbatch_ctx4096.json"
timeout "$(left 70)" python3 benchmarks/bench_engine.py kivi:1:512 fp16:1:512 kivi:1:512 fp16:1:512 \
    2>&1 | tee "$OUT/bench_engine.log" | grep -v Warning | tail -8
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
echo "ncu: ${NCU:-none} at ${SECONDS}s"
if [ -n "$NCU" ]; then
  timeout "$(left 100)" "$NCU" --clock-control none -k regex:_decode_attn_v3 --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
    --section MemoryWorkloadAnalysis --section LaunchStats \
    python3 benchmarks/ncu_v3.py 8x32768 > "$OUT/ncu_8x32k.txt" 2>&1
  echo "ncu exit: $?"
fi
timeout "$(left 150)" python3 benchmarks/bench_v3_variants.py --rows 8x32768,64x4096,128x4096 \
    --variants packed,p_r128,p_r80,p_r88,p_pf2_r96 2>&1 | tee "$OUT/variants_caps.log" | grep -v Warning
mv "$OUT/v3_variants.json" "$OUT/v3_variants_caps.json" 2>/dev/null; echo "done at ${SECONDS}s"
