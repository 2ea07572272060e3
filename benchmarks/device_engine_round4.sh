#!/usr/bin/env bash
# One device call for issue 6 after kernel round 4: batch-1 rows of the lean loop (both sides), then
# `kivi profile --find-max-batch` at ctx 4096 (each side at its largest batch minus the 5% margin).
# Logs and JSON under $OUT.   OUT=dir bash benchmarks/device_engine_round4.sh
source "$(dirname "$0")/device_env.sh"
timeout "${ENGINE_TIMEOUT:-100}" python3 benchmarks/bench_engine.py ${ENGINE_ROWS:-kivi:1:512 fp16:1:512 kivi:1:512 fp16:1:512} \
    2>&1 | tee "$OUT/bench_engine.log" | grep -v Warning | tail -12
echo "engine exit: ${PIPESTATUS[0]}"
timeout "${PROFILE_TIMEOUT:-420}" python3 -c "from kivi_cli.main import app; app()" profile --arch llama-2-7b \
    --ctx 4096 --gen 64 --bits 2 --find-max-batch --batch 56 --json > "$OUT/profile_maxbatch_ctx4096.json" 2> "$OUT/profile.err"
echo "profile exit: $?"; tail -25 "$OUT/profile.err"; head -c 3000 "$OUT/profile_maxbatch_ctx4096.json"
