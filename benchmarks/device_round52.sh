#!/usr/bin/env bash
# Session 18, second call, with PDL on: the short call (1x512) at other v1 tilings and with the first launch as a
# dependent, both shapes; Nsight's kernel durations of the Llama-2 short call; the GQA window's own launch at small
# batches and at two-wave rows (whole-wave split counts), against "auto".
#   OUT=dir LIMIT=s bash benchmarks/device_round52.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
export REPEAT=3
SHORT=auto,auto_pdlfirst,auto_nopdl,v1_n32_S16,v1_n16_S32,v1_n64_S8_w8,v1_S1_n128_w8
variants short_7b 70 --graph --shape llama2-7b --rows 1x512 --variants $SHORT
variants short_8b 70 --graph --shape llama3.1-8b --rows 1x512 --variants $SHORT
if with_ncu; then
  timeout "$(left 60)" "$NCU" --clock-control none -k "regex:_decode_attn_(split|reduce)" --launch-skip 2 \
      --launch-count 2 --section SpeedOfLight --section LaunchStats --section Occupancy \
      python3 benchmarks/ncu_v3.py 1x512 shape=llama2-7b variant=auto > "$OUT/ncu_short_7b.txt" 2>&1
  grep -E "_decode_attn|Duration|DRAM Throughput|Grid Size|Registers Per|Achieved Occ" "$OUT/ncu_short_7b.txt"
fi
export REPEAT=2
variants sep_small 90 --graph --shape llama3.1-8b --rows 1x4096,1x32768,2x16384,4x32768 \
    --variants auto,gqa_mma_sep,gqa_mma_sep_nopdl
variants sep_2wave 200 --graph --shape llama3.1-8b --rows 64x4096,96x4096,128x4096 \
    --variants auto,gqa_mma_sep,gqa_mma_sep_S2,gqa_mma_sep_S3,gqa_mma_sep_S4
echo "done at ${SECONDS}s"
