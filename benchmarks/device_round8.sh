#!/usr/bin/env bash
# Kernel round 8 (one device call): the packed path's GPU tests with the round-8 options, a sweep of them
# (bench_v3_variants.py), DRAM read / write bytes under Nsight Compute for the flat and key-phase u folds
# with and without discarding the scratch, and the e2e near-tie test run 3 times alone (-s: its summary).
#   OUT=dir bash benchmarks/device_round8.sh
# Its variants were removed after this call: the discard ones before any commit (discarding raced with the
# window split, which shares the last bulk split's scratch row: NaN in one GPU test), the rest after 958a651.
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-540}
kernel_tests "packed or v3" 120
sweep "${ROWS:-8x32768,64x4096,128x4096,16x16384,1x32768}" \
    "${VARIANTS:-packed,p_flat,p_flat_discard,p_discard,p_vf16,p_kh,p_kh_kf16,p_all,p_all_r128}" 240
if with_ncu; then
  for kw in "kfold=0" "kfold=0 discard=1" "kfold=1" "kfold=1 discard=1"; do
    echo "== $kw" >> "$OUT/ncu_dram.txt"
    # shellcheck disable=SC2086
    ncu_v3 40 "--metrics dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,lts__t_sector_hit_rate.pct" \
      8x32768 $kw 2>&1 | grep -E "dram__|gpu__time|lts__" >> "$OUT/ncu_dram.txt"
  done
  cat "$OUT/ncu_dram.txt"; echo "ncu done at ${SECONDS}s"
fi
for i in 1 2 3; do
  timeout "$(left 60)" python3 -m pytest -m gpu -q -s -p no:cacheprovider tests/test_gpu_e2e.py \
    -k "generate_equals_torch_path" 2>&1 | grep -E "differing|passed|failed" | tee -a "$OUT/e2e_repeat.log"
done
echo "done at ${SECONDS}s"
