#!/usr/bin/env bash
# One device call for the core/CLI issues: the whole test suite under the device's transformers (5.17)
# and CUDA (GPU tests included), then `kivi profile` at the issue's shape. Logs under $OUT.
source "$(dirname "$0")/device_env.sh"
timeout "${TEST_TIMEOUT:-240}" python3 -m pytest -q -p no:cacheprovider -n 12 tests/ \
    --ignore=tests/test_smollm2.py --ignore=tests/test_assets.py -m "not slow" 2>&1 | tee "$OUT/tests.log" | tail -40
echo "tests exit: ${PIPESTATUS[0]}"
timeout "${PROFILE_TIMEOUT:-240}" python3 -c "from kivi_cli.main import app; app()" profile --arch llama-2-7b \
    --batch 64 --ctx 4096 --gen 16 --bits 2 --prefill-chunk 1024 --json > "$OUT/profile_llama2_7b_b64_ctx4096.json" 2> "$OUT/profile.err"
echo "profile exit: $?"; tail -5 "$OUT/profile.err"; head -c 3000 "$OUT/profile_llama2_7b_b64_ctx4096.json"
