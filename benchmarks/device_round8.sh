#!/usr/bin/env bash
# Kernel round 8 (one device call): the packed path's GPU tests with the round-8 options, a sweep of them
# (bench_v3_variants.py), DRAM read / write bytes under Nsight Compute for the flat and key-phase u folds
# with and without discarding the scratch, and the e2e near-tie test run 3 times alone (-s: its summary).
#   OUT=dir bash benchmarks/device_round8.sh
# Its variants were removed after this call: the discard ones before any commit (discarding raced with the
# window split, which shares the last bulk split's scratch row: NaN in one GPU test), the rest after 958a651.
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-540}
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n "${XDIST:-8}")
timeout "$(left 120)" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" -k "packed or v3" \
    tests/test_kernels_decode_attention.py 2>&1 | tee "$OUT/gpu_tests.log" | grep -v Warn | tail -5
echo "gpu tests exit: ${PIPESTATUS[0]} at ${SECONDS}s"
timeout "$(left 240)" python3 benchmarks/bench_v3_variants.py --rows ${ROWS:-8x32768,64x4096,128x4096,16x16384,1x32768} \
    --variants ${VARIANTS:-packed,p_flat,p_flat_discard,p_discard,p_vf16,p_kh,p_kh_kf16,p_all,p_all_r128} 2>&1 \
    | tee "$OUT/variants.log" | grep -v Warning
echo "sweep done at ${SECONDS}s"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ] && [ -z "${NO_NCU:-}" ]; then
  for kw in "kfold=0" "kfold=0 discard=1" "kfold=1" "kfold=1 discard=1"; do
    echo "== $kw" >> "$OUT/ncu_dram.txt"
    timeout "$(left 40)" "$NCU" --clock-control none -k regex:_decode_attn_v3 --launch-skip 2 --launch-count 1 \
      --metrics dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,lts__t_sector_hit_rate.pct \
      python3 benchmarks/ncu_v3.py 8x32768 $kw 2>&1 | grep -E "dram__|gpu__time|lts__" >> "$OUT/ncu_dram.txt"
  done
  cat "$OUT/ncu_dram.txt"; echo "ncu done at ${SECONDS}s"
fi
for i in 1 2 3; do
  timeout "$(left 60)" python3 -m pytest -m gpu -q -s -p no:cacheprovider tests/test_gpu_e2e.py \
    -k "generate_equals_torch_path" 2>&1 | grep -E "differing|passed|failed" | tee -a "$OUT/e2e_repeat.log"
done
echo "done at ${SECONDS}s"
