"""Sweep of the shipped v3 kernel's tuning keywords (one device call): time and error of each variant.

    python3 benchmarks/bench_v3_variants.py [--rows 8x32768,64x4096] [--variants name,name] [--graph]

Each variant is a set of `decode_attention_v3` keywords (VARIANTS below); every one is timed with
triton.testing.do_bench (median) on the same states as `bench_decode_attention.py` builds (Llama-2-7B
attention shape: 32 heads, head_dim 128, k2v2, G=32, R=128), and checked against v1's output. With
--graph, each is timed replayed from a CUDA graph instead (`graph_us`: GPU time, L2 flushed before each
call), which is what counts where one eager call is host-bound (batch 1, short contexts). Prints a
table and writes $OUT/v3_variants.json (device, versions, rows). Where a variant wins, its numbers are
what the kernel's defaults and comments cite.
"""
import argparse
import json
import os
import sys

import torch
import triton
import transformers
from triton.testing import do_bench

sys.path.insert(0, os.path.dirname(__file__))
from bench_decode_attention import copy_bandwidth, graph_us, kivi_split, make_state, state_bytes  # noqa: E402

from kivi_kernels.decode_attention import decode_attention_triton  # noqa: E402
from kivi_kernels import decode_attention_gqa as dgq  # noqa: E402
from kivi_kernels import decode_attention_v3 as da3  # noqa: E402
from kivi_kernels import decode_attention as da  # noqa: E402
from kivi_kernels import pdl  # noqa: E402

D = 128
SHAPES = {"llama2-7b": (32, 32), "llama3.1-8b": (32, 8), "llama3.1-70b": (64, 8)}  # (query heads, kv heads)
# name -> decode_attention_v3 keywords. maxnreg: the register cap (occupancy: 65536 / (128 threads x cap)
# programs an SM). Round 5's prefetch / key_stages variants (sweep/variants.log) were removed with the
# options after commit 67cf731; round 6's acc_in_scratch (h200_v3_round6/) after commit 4d45246; round
# 7's tma / stages / urows (h200_v3_round7/) after commit 0ce0694; round 8's kernel and its options
# (h200_v3_round8/) are in commits 958a651 and 28735cf.
VARIANTS = {
    "fp32": {"packed": False},
    "packed": {"packed": True},
    "p_r128": {"packed": True, "maxnreg": 128},
    "p_r80": {"packed": True, "maxnreg": 80},
    "p_r88": {"packed": True, "maxnreg": 88},
    "p_w8_bw256": {"packed": True, "num_warps": 8, "block_w": 256},
    # the u fold's pass width (ufold x NG pairs a thread; the default is DEFAULT_UFOLD = 2)
    # the tensor-core bulk (decode_attention_mma): 128 tokens a warp a tile
    # (mma: blocks of 8 key word rows a warp a tile)
    "mma": {"mma": 1},
    "mma_w2": {"mma": 1, "num_warps": 2},
    "mma_w8": {"mma": 1, "num_warps": 8},
    "mma_w1": {"mma": 1, "num_warps": 1},
    "mma_w2_r96": {"mma": 1, "num_warps": 2, "maxnreg": 96},
    "mma_w2_r168": {"mma": 1, "num_warps": 2, "maxnreg": 168},
    # the value operand by shuffles from the key lanes (no scratch row, no fold pass, no barrier a tile)
    "mma_sh": {"mma": 1, "num_warps": 2, "mma_shfl": True},
    "mma_sh_r168": {"mma": 1, "num_warps": 2, "mma_shfl": True, "maxnreg": 168},
    "mma_sh_w1": {"mma": 1, "num_warps": 1, "mma_shfl": True},
    "mma_sh_w4": {"mma": 1, "num_warps": 4, "mma_shfl": True},
    # caps: 8 / 7 / 6 / 5 / 5 two-warp programs an SM at 128 / 144 / 168 / 184 / 200 registers
    # session 15's mma_sh_pf<n> / mma_sh_w4_pf<n> (the next tiles prefetched into L2) were removed with the option
    # after commit 87440de (h200_round34: 5-16% slower)
    "mma_sh_r144": {"mma": 1, "num_warps": 2, "mma_shfl": True, "maxnreg": 144},
    "mma_sh_r184": {"mma": 1, "num_warps": 2, "mma_shfl": True, "maxnreg": 184},
    "mma_sh_r200": {"mma": 1, "num_warps": 2, "mma_shfl": True, "maxnreg": 200},
    "mma_sh_w1_r184": {"mma": 1, "num_warps": 1, "mma_shfl": True, "maxnreg": 184},
    "mma_sh_r168_S2x": {"mma": 1, "num_warps": 2, "mma_shfl": True, "maxnreg": 168, "num_splits": "x2"},
    "mma_sh_r168_Sh": {"mma": 1, "num_warps": 2, "mma_shfl": True, "maxnreg": 168, "num_splits": "xh"},
    "mma_sh_r160": {"mma": 1, "num_warps": 2, "mma_shfl": True, "maxnreg": 160},
    "mma_sh_r176": {"mma": 1, "num_warps": 2, "mma_shfl": True, "maxnreg": 176},
    "mma_sh_w1_r168": {"mma": 1, "num_warps": 1, "mma_shfl": True, "maxnreg": 168},
    "mma_r168": {"mma": 1, "maxnreg": 168},
    "mma_r96": {"mma": 1, "maxnreg": 96},
    "mma_S2x": {"mma": 1, "num_splits": "x2"},
    "mma2": {"mma": 2},
    "mma2_r168": {"mma": 2, "maxnreg": 168},
    "mma2_r200": {"mma": 2, "maxnreg": 200},
    "mma2_w2_r168": {"mma": 2, "num_warps": 2, "maxnreg": 168},
    "mma2_S2x_r168": {"mma": 2, "maxnreg": 168, "num_splits": "x2"},
    "p_f1": {"ufold": 1},
    "p_f4": {"ufold": 4},
    "p_r72": {"packed": True, "maxnreg": 72},
    "p_r80_f4": {"packed": True, "maxnreg": 80, "ufold": 4},
    # bulk split counts (the default packed path): the split rule's choice is the "packed" row
    **{f"S{n}": {"num_splits": n} for n in (1, 2, 3, 4, 8, 16)},
    "S_round4": {"num_splits": "round4"},  # the rule before round 5: ~4 x SMs programs, >= 2 tiles each
    # short contexts (1 x 512: 20 us from a graph vs SDPA's 9.6, h200_round10/): one program a head with the
    # window in it (no reduce launch), and smaller tiles / fewer warps (24 word rows of keys at 1 x 512)
    "single": {"split_rem": False},
    "bw64_w2": {"block_w": 64, "num_warps": 2},
    "bw64_w2_single": {"block_w": 64, "num_warps": 2, "split_rem": False},
    "bw32_w1": {"block_w": 32, "num_warps": 1},
    "bw32_w1_single": {"block_w": 32, "num_warps": 1, "split_rem": False},
    "bw32_w1_S2": {"block_w": 32, "num_warps": 1, "num_splits": 2},
    # the shared-dequantization GQA kernel (decode_attention_gqa; --shape llama3.1-8b): its pair path at the
    # defaults (32 key word rows, 2 threads a row, 2 warps, cap 128), round 11's first default (64 x 4 warps),
    # other caps and tiles, its fp32 path, other split counts. maxnreg: programs an SM = 65536 / (threads x
    # cap). Round 11's gqa_kt4* variants (4 threads a key word row; h200_round11b/) left with the option after
    # commit 5cf7a30
    "gqa": {"_impl": "gqa"},
    "gqa_bw64_w4": {"_impl": "gqa", "block_w": 64},
    "gqa_r112": {"_impl": "gqa", "maxnreg": 112},
    "gqa_r168": {"_impl": "gqa", "maxnreg": 168},
    "gqa_bw16": {"_impl": "gqa", "block_w": 16},
    "gqa_f32": {"_impl": "gqa", "packed": False},
    # bulk splits (the log's S adds the window's split)
    **{f"gqa_S{n}": {"_impl": "gqa", "num_splits": n} for n in (1, 2, 4, 8, 16, 32, 64)},
    # its tensor-core bulk (decode_attention_gqa_mma): the launcher's defaults, caps, warps, split targets
    # ("p<N>": the split rule aiming at N programs)
    "gqa_mma": {"_impl": "gqa", "mma": True},
    "gqa_pairs": {"_impl": "gqa", "packed": True},
    "gqa_mma_r128": {"_impl": "gqa", "mma": True, "maxnreg": 128},
    "gqa_mma_r96": {"_impl": "gqa", "mma": True, "maxnreg": 96},
    "gqa_mma_w4": {"_impl": "gqa", "mma": True, "num_warps": 4},
    "gqa_mma_w4_r128": {"_impl": "gqa", "mma": True, "num_warps": 4, "maxnreg": 128},
    "gqa_mma_w1": {"_impl": "gqa", "mma": True, "num_warps": 1},
    "gqa_mma_late": {"_impl": "gqa", "mma": True, "mma_early": False},
    "gqa_mma_late_w1": {"_impl": "gqa", "mma": True, "mma_early": False, "num_warps": 1},
    **{f"gqa_mma_r{r}": {"_impl": "gqa", "mma": True, "maxnreg": r} for r in (144, 152, 168, 184, 200, 232, 255)},
    # session 12: the value loads where ptxas puts them (late) or first (early) at caps that fit 8 / 10 / 12 / 14 /
    # 16 / 18 programs an SM, with other split targets and two warps
    **{f"gqa_mma_r{r}_late": {"_impl": "gqa", "mma": True, "maxnreg": r, "mma_early": False}
       for r in (112, 128, 144, 168, 200, 255)},
    **{f"gqa_mma_r{r}_early": {"_impl": "gqa", "mma": True, "maxnreg": r, "mma_early": True} for r in (128, 168, 255)},
    **{f"gqa_mma_r{r}_late_p{n}": {"_impl": "gqa", "mma": True, "maxnreg": r, "mma_early": False,
                                   "num_splits": f"p{n}"} for r in (128, 168) for n in (1024, 1536, 3072, 4096)},
    "gqa_mma_r128_late_w2": {"_impl": "gqa", "mma": True, "maxnreg": 128, "mma_early": False, "num_warps": 2},
    # the window's split on tensor cores (rest_dot), at the default cap and at caps it may now allow
    "gqa_mma_restdot": {"_impl": "gqa", "mma": True, "rest_dot": True},
    **{f"gqa_mma_r{r}_restdot": {"_impl": "gqa", "mma": True, "rest_dot": True, "maxnreg": r} for r in (128, 168)},
    # round 29's software-pipelining variants (mma_stages / rest_stages) were removed with the options after
    # commit 1a29569 (h200_round29: 2.3x slower / noise)
    # session 14: the window's split off tensor cores (rest_dot=False: 512 B of shared memory instead of 23 KB, so
    # the register cap alone sets the programs an SM: 12 at 168, 16 at 128), explicit bulk split counts
    # ("S<n>"; waves of whole programs), and tokens a split at batch 1 ("t<T>": L // T splits)
    **{f"gqa_mma_rd0{s}": {"_impl": "gqa", "mma": True, "rest_dot": False, **kw}
       for s, kw in (("", {}), ("_r128", {"maxnreg": 128}), ("_r144", {"maxnreg": 144}))},
    **{f"gqa_mma_S{n}": {"_impl": "gqa", "mma": True, "num_splits": n}
       for n in (1, 2, 3, 4, 6, 8, 12, 16, 18, 24, 32, 36, 48, 64)},
    **{f"gqa_mma_rd0_S{n}": {"_impl": "gqa", "mma": True, "rest_dot": False, "num_splits": n}
       for n in (2, 3, 4, 6, 12, 16, 24, 32, 48)},
    **{f"gqa_mma_t{t}": {"_impl": "gqa", "mma": True, "num_splits": f"t{t}"} for t in (64, 128, 256, 512, 1024)},
    # the split rule before session 14's (2048 programs, no sqrt(L / 2) term, no one-wave cap)
    "gqa_mma_p2048": {"_impl": "gqa", "mma": True, "num_splits": "p2048"},
    # the window region shared by W programs a kv head ("w<W>"; the default: window_splits)
    **{f"gqa_mma_w{w}": {"_impl": "gqa", "mma": True, "win_splits": w} for w in (1, 2, 3, 4, 5, 9)},
    **{f"gqa_mma_t{t}_w{w}": {"_impl": "gqa", "mma": True, "num_splits": f"t{t}", "win_splits": w}
       for t in (128, 512) for w in (1, 3, 9)},
    # session 15: the bulk prefetches the group PF tiles ahead into L2 ("pf<PF>"), alone, with the rd0 build (no
    # shared memory: 12 / 16 programs an SM at caps 168 / 128) and with other split counts at batch 1
    **{f"gqa_mma_pf{n}": {"_impl": "gqa", "mma": True, "mma_prefetch": n} for n in (0, 1, 2, 3, 4, 6, 8, 12, 16)},
    **{f"gqa_mma_pf{n}_rd0{s}": {"_impl": "gqa", "mma": True, "mma_prefetch": n, "rest_dot": False, **kw}
       for n in (2, 4, 8) for s, kw in (("", {}), ("_r128", {"maxnreg": 128}))},
    **{f"gqa_mma_pf{n}_t{t}": {"_impl": "gqa", "mma": True, "mma_prefetch": n, "num_splits": f"t{t}"}
       for n in (2, 4, 8) for t in (128, 256, 512, 1024)},
    **{f"gqa_mma_pf{n}_S{s}": {"_impl": "gqa", "mma": True, "mma_prefetch": n, "num_splits": s}
       for n in (2, 4, 8) for s in (4, 8, 12, 16, 24, 32)},
    # session 16 (h200_round39): the window's splits on a launch of their own after the bulk's ("sep": no shared memory
    # in the bulk, so 12 programs an SM at cap 168 and ~200 KB of L1 instead of ~28), at other split counts ("S<n>")
    # and cap 128 (session 17, h200_round48: S1-S4 at 64-128 x 4096); "one": one launch, as before (window_launch_pays
    # picks). Round 39's prefetch-into-L1 variants left with the option (no change)
    "gqa_mma_one": {"_impl": "gqa", "mma": True, "window_launch": False},
    "gqa_mma_sep": {"_impl": "gqa", "mma": True, "window_launch": True},
    **{f"gqa_mma_sep_S{n}": {"_impl": "gqa", "mma": True, "window_launch": True, "num_splits": n}
       for n in (1, 2, 3, 4, 8, 12, 16, 20, 24, 32, 48)},
    **{f"gqa_mma_sep_r128{x}": {"_impl": "gqa", "mma": True, "window_launch": True, "maxnreg": 128, **kw}
       for x, kw in (("", {}), ("_S32", {"num_splits": 32}))},
    # session 16's gqa_mma_compact* / gqa_mma_noc* (the bulk's compact loads, mma_compact) were removed with the option
    # after commit 60cf50e (h200_round52: the window's own launch at whole waves beat them where they paid)
    # session 17's gqa_mma_c<level> (more of the next tile ahead in registers) and gqa_mma_c1_pfall were removed with
    # the option after commit daa3b63 (h200_round44: slower)
    # session 17: the bulk's softmax rescaling every tile (MMA_LAZY_RESCALE = 0) against the lazy default (only where
    # a tile's max passes the running one by more than 2; "tau<t>": other thresholds); _set: decode_attention_gqa
    # constants for the variant's calls
    "auto_tau0": {"_impl": "auto", "_set": {"MMA_LAZY_RESCALE": 0.0}},
    **{f"auto_tau{t}": {"_impl": "auto", "_set": {"MMA_LAZY_RESCALE": float(t)}} for t in (2, 4, 8)},
    "gqa_mma_tau0": {"_impl": "gqa", "mma": True, "_set": {"MMA_LAZY_RESCALE": 0.0}},
    # session 17's gqa_mma_sep_r<cap>_w<k> (the bulk's own launch at caps 144-168, a wave of k programs an SM:
    # num_splits "w<k>") were removed after commit 11c6957 (h200_round47: slower than cap 168 at 12 an SM)
    # session 18: programmatic dependent launch (kernels/pdl.py) off, the call's first launch as a dependent or not;
    # the GQA window's own launch (or one launch) at batches below WINDOW_LAUNCH_MIN_HEADS, now that it overlaps
    "auto_nopdl": {"_impl": "auto", "_set": {"pdl.PDL": False}},
    "auto_pdlfirst": {"_impl": "auto", "_set": {"pdl.PDL_FIRST": True}},  # what "auto" runs since round 53
    "auto_nopdlfirst": {"_impl": "auto", "_set": {"pdl.PDL_FIRST": False}},
    "gqa_mma_sep_nopdl": {"_impl": "gqa", "mma": True, "window_launch": True, "_set": {"pdl.PDL": False}},
    # what a default call runs (kivi_kernels.decode_attention.pick_impl)
    "auto": {"_impl": "auto"},
    # v1 (tensor-core tiles of block_n tokens) for short contexts, with --graph: one program a head (no reduce
    # launch) or one tile a program (the most parallel), wider tiles / more warps, the dot-free path
    "v1": {"_impl": "v1"},
    "v1_S1": {"_impl": "v1", "num_splits": 1},
    "v1_S1_n128_w8": {"_impl": "v1", "num_splits": 1, "block_n": 128, "num_warps": 8},
    "v1_n16_S32": {"_impl": "v1", "num_splits": 32, "block_n": 16},
    "v1_n32_S16": {"_impl": "v1", "num_splits": 16, "block_n": 32},
    "v1_n64_S8": {"_impl": "v1", "num_splits": 8, "block_n": 64},
    "v1_n64_S8_w8": {"_impl": "v1", "num_splits": 8, "block_n": 64, "num_warps": 8},
    "v1_n64_S8_w2": {"_impl": "v1", "num_splits": 8, "block_n": 64, "num_warps": 2},
    "v1_n32_S16_w2": {"_impl": "v1", "num_splits": 16, "block_n": 32, "num_warps": 2},
    # session 18: v1's tile and warps on short calls (one tile a program: the split rule's), `_short_block_n` picks
    **{f"v1_n{n}_w{w}": {"_impl": "v1", "block_n": n, "num_warps": w} for n, w in ((64, 4), (32, 4), (32, 2))},
    "v1_nodot_n16_S32": {"_impl": "v1", "num_splits": 32, "block_n": 16, "use_dot": False},
    # session 19's auto_nowinhalf (half tiles only in a short call's value window region off) went with the option
    # after commit 66c5825 (h200_round56: the option was slower)
    "v1_w2": {"_impl": "v1", "num_warps": 2},  # v1's own tile rule at 2 warps
    # v1's tile loops at 1, 2 or 3 software-pipelining stages (Triton's default is 3 on sm_90; `_v1_stages` decides
    # in "auto"), also at v1's tiles of 64 / 32
    **{f"auto_v1st{n}": {"_impl": "auto", "_set": {"da.V1_STAGES": n}} for n in (1, 2, 3)},
    **{f"v1_n{b}_st{n}": {"_impl": "v1", "block_n": b, "_set": {"da.V1_STAGES": n}} for b in (64, 32) for n in (1, 2)},
}
ROWS = [(8, 32768), (64, 4096), (16, 16384), (128, 4096), (1, 32768)]


def _const_home(key):
    # "NAME": decode_attention_gqa's constant; "pdl.NAME": kernels/pdl.py's; "da.NAME": decode_attention's
    mod, _, name = key.rpartition(".")
    return {"": dgq, "pdl": pdl, "da": da}[mod], name


def with_constants(sets, call, *args, **kw):
    """call(*args, **kw) with the constants `sets` in place (`_const_home`; the launchers read them at each call; a
    CUDA graph keeps what it captured)."""
    old = {k: getattr(*_const_home(k)) for k in sets}
    for k, v in sets.items():
        setattr(*_const_home(k), v)
    try:
        return call(*args, **kw)
    finally:
        for k, v in old.items():
            setattr(*_const_home(k), v)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default=",".join(f"{b}x{c}" for b, c in ROWS))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--graph", action="store_true", help="time from a CUDA graph (GPU time; batch-1 rows)")
    ap.add_argument("--shape", default="llama2-7b", choices=list(SHAPES))
    ap.add_argument("--repeat", type=int, default=1,
                    help="time the variants of a row this many times, in turn (ABCABC), and report the median: "
                         "calls of one build moved up to 15-20%% between rounds")
    a = ap.parse_args()
    Hq, H = SHAPES[a.shape]
    rows = [tuple(int(x) for x in r.split("x")) for r in a.rows.split(",")]
    names = a.variants.split(",")
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        sys.exit(f"unknown variant(s) {bad}; known: {', '.join(VARIANTS)}")
    cbw = copy_bandwidth()
    print(f"copy bandwidth (read+write): {cbw:.2f} TB/s", flush=True)
    res = []
    for B, L in rows:
        n_kq, n_vq = kivi_split(L)
        st = make_state(B, H, L, n_kq, n_vq)
        nbytes = state_bytes(B, H, L, n_kq, n_vq)
        q = torch.randn(B, Hq, 1, D, device="cuda", dtype=torch.float16)
        ref = decode_attention_triton(q, st, None, D**-0.5, impl="v1").float()
        if a.graph:  # the fp16 SDPA reference, timed the same way on a cache of the same shape
            k, v = (torch.randn(B, H, L, D, device="cuda", dtype=torch.float16) for _ in range(2))
            us = graph_us([lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=Hq != H)])
            res.append(dict(B=B, L=L, variant="fp16_sdpa", us=us))
            print(f"{B}x{L:<6} {'fp16 SDPA':<22} {us:8.1f} us", flush=True)
            del k, v
        todo = []  # (name, which, call, kw, f, err, bw3): each variant checked once, then timed `repeat` times in turn
        for name in names:
            kw = dict(VARIANTS[name])
            which = kw.pop("_impl", "v3")
            sets = kw.pop("_set", {})
            call = {"gqa": dgq.decode_attention_gqa, "v1": decode_attention_triton,
                    "auto": decode_attention_triton}.get(which, da3.decode_attention_v3)
            if which in ("v1", "auto"):
                kw["impl"] = which
            if str(kw.get("num_splits")).startswith("t"):  # L // T bulk splits
                kw["num_splits"] = max(1, L // int(kw["num_splits"][1:]))
            if str(kw.get("num_splits")).startswith("w"):  # one wave of k programs an SM
                n_sm = torch.cuda.get_device_properties(q.device).multi_processor_count
                kw["num_splits"] = max(1, int(kw["num_splits"][1:]) * n_sm // (B * H))
            if kw.get("num_splits") == "round4":
                n_sm = torch.cuda.get_device_properties(q.device).multi_processor_count
                kw["num_splits"] = max(1, min(-(-4 * n_sm // (B * H)), -(-L // (2 * da3.DEFAULT_BLOCK_W * 16))))
            bw3 = 8 * (kw.get("num_warps") or 4) * kw["mma"] if kw.get("mma") else kw.get("block_w") or da3.DEFAULT_BLOCK_W
            if str(kw.get("num_splits")).startswith("p"):  # the GQA tensor-core bulk's rule at another target
                bt = 32 * (kw.get("num_warps") or dgq.MMA_WARPS)
                kw["num_splits"] = da3.num_splits_v3(B * H, L, bt, int(kw["num_splits"][1:]))
            if kw.get("num_splits") == "x2":  # twice the split rule's bulk splits (at SPLIT_PROGRAMS)
                kw["num_splits"] = 2 * da3.num_splits_v3(B * Hq, L, bw3 * 16)
            if kw.get("num_splits") == "xh":  # half of them (at SPLIT_PROGRAMS)
                kw["num_splits"] = max(1, da3.num_splits_v3(B * Hq, L, bw3 * 16) // 2)
            try:
                f = (lambda call=call, kw=kw, q=q, st=st, sets=sets: with_constants(sets, call, q, st, None,
                                                                                    D**-0.5, **kw))
                err = (f().float() - ref).abs().max().item()
            except Exception as e:  # a variant that does not compile is a result too
                print(f"{B}x{L} {name}: {type(e).__name__}: {str(e)[:300]}", flush=True)
                res.append(dict(B=B, L=L, variant=name, kwargs=VARIANTS[name], error=f"{type(e).__name__}: {e}"[:500]))
                continue
            todo.append((name, which, call, kw, f, err, bw3))
        times = {name: [] for name, *_ in todo}
        for _ in range(a.repeat):
            for name, _w, _c, _k, f, _e, _b in todo:
                times[name].append(graph_us([f]) if a.graph else do_bench(f, return_mode="median") * 1e3)
        for name, which, call, kw, f, err, bw3 in todo:
            us = sorted(times[name])[len(times[name]) // 2]
            tbps = nbytes / us / 1e6
            if which in ("v1", "auto"):
                splits = kw.get("num_splits") or 0  # 0: the kernel's own rule
            elif call is da3.decode_attention_v3:  # v3: programs by query head
                sh = kw.get("mma") == 1 and kw.get("mma_shfl", da3.MMA_SHFL)  # the launcher's split target
                splits = da3.splits_v3(B * Hq, L, bw3 * 16, 16, kw.get("num_splits"), kw.get("split_rem", True),
                                       da3.SPLIT_PROGRAMS_MMA_SH if sh else da3.SPLIT_PROGRAMS)[0]
            elif kw.get("mma"):  # the GQA tensor-core bulk: a program a kv head, a key group a warp
                sep = kw.get("window_launch", dgq.window_launch_pays(B * H, L))
                splits, chunk = da3.splits_v3(B * H, L, 32 * (kw.get("num_warps") or dgq.MMA_WARPS), 16,
                                              kw.get("num_splits") or dgq.mma_splits(B * H, L, sep))
                al = 32 if sep else 16  # the bulk ends at whole tensor-core tiles when the window has its own launch
                span = L - (st.n_vq // al) * al
                splits += dgq.window_programs(chunk, span, True, sep, kw.get("win_splits")) - 1
            else:
                bw = kw.get("block_w") or (dgq.DEFAULT_BLOCK_W if kw.get("packed") is False else dgq.PACKED_BLOCK_W)
                splits = da3.splits_v3(B * H, L, bw * 16, 16,
                                       kw.get("num_splits"))[0]
            res.append(dict(B=B, L=L, variant=name, kwargs=VARIANTS[name], us=us, us_all=times[name], tbps=tbps,
                            frac_copy_bw=tbps / cbw, max_abs_err_vs_v1=err, programs_per_head=splits))
            spread = f"  [{min(times[name]):.1f}-{max(times[name]):.1f}]" if a.repeat > 1 else ""
            print(f"{B}x{L:<6} {name:<22} {us:8.1f} us  {tbps:5.2f} TB/s  {100 * tbps / cbw:4.1f}% copy  "
                  f"S {splits:<3d} err {err:.1e}{spread}", flush=True)
        del st, todo
        torch.cuda.empty_cache()
    out = os.environ.get("OUT", ".")
    meta = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                transformers=transformers.__version__, copy_tbps=cbw, shape=a.shape, command=" ".join(sys.argv))
    with open(os.path.join(out, "v3_variants.json"), "w") as fh:
        json.dump(dict(meta=meta, rows=res), fh, indent=1)


if __name__ == "__main__":
    main()
