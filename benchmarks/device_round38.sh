#!/usr/bin/env bash
# Session 16, first call: where the GQA tensor-core bulk's time goes, from Nsight Compute's counters. The full set
# on one warm "auto" call at Llama-3.1-8B 8x32K (details page and the per-SASS-instruction source page, with its
# warp-stall samples), the main sections at 128x4096, and MHA's v3 at 8x32K (Llama-2 shape) beside them.
#   OUT=dir LIMIT=s bash benchmarks/device_round38.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-420}
with_ncu || { echo "no ncu"; exit 1; }
KERNEL=_decode_attn_gqa_kernel ncu_v3 200 "--set full --import-source no -o $OUT/gqa_8x32k -f" 8x32768 \
    shape=llama3.1-8b variant=auto > "$OUT/ncu_run.log" 2>&1
echo "ncu gqa 8x32K exit: $? at ${SECONDS}s"; tail -3 "$OUT/ncu_run.log"
"$NCU" -i "$OUT/gqa_8x32k.ncu-rep" --page details > "$OUT/ncu_gqa_8x32k.txt" 2>&1
"$NCU" -i "$OUT/gqa_8x32k.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu_gqa_8x32k_sass.csv" 2>&1
echo "source page: $(wc -l < "$OUT/ncu_gqa_8x32k_sass.csv") lines"
S="--section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables --section Occupancy --section WarpStateStats --section SchedulerStats --section LaunchStats"
KERNEL=_decode_attn_gqa_kernel ncu_v3 100 "$S" 128x4096 shape=llama3.1-8b variant=auto > "$OUT/ncu_gqa_128x4096.txt" 2>&1
echo "ncu gqa 128x4096 exit: $? at ${SECONDS}s"
KERNEL=_decode_attn_v3 ncu_v3 100 "$S" 8x32768 variant=auto > "$OUT/ncu_mha_8x32k.txt" 2>&1
echo "ncu mha 8x32K exit: $? at ${SECONDS}s"
rm -f "$OUT/gqa_8x32k.ncu-rep"
grep -E "Duration|Memory Throughput|DRAM Throughput|L1/TEX Hit|L2 Hit|Issue Slots Busy|Achieved Occupancy|Warp Cycles Per Issued|No Eligible|Registers Per|Theoretical Occ" "$OUT"/ncu_*.txt
echo "done at ${SECONDS}s"
