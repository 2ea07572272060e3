"""Benchmark: KIVI fused decode attention vs fp16 SDPA and vs dequantize-then-SDPA, plus quantize time.

    python3 benchmarks/bench_decode_attention.py [--impl v1,v3,v3f] [--sweep] [--rows 8x32768,64x4096]

For each (B x ctx) and attention shape (Llama-2-7B: 32 q / 32 kv heads; Llama-3.1-8B: 32 q / 8 kv; D=128)
it times one decode-attention call (q_len 1, fp16, k2v2, G=32, R=128, KIVI's own split: n_kq = ctx
rounded down to 128, n_vq = ctx - 128) with triton.testing.do_bench (median; do_bench also clears L2
before every call, and input sets are rotated when one would fit in L2), and reports:
  * packed bytes read / time in TB/s (the state's bytes: codes + scales/mins + fp tail and window),
    and that as a fraction of a device-to-device copy measured in the same run (read + write);
  * speed-up vs (a) torch SDPA over an fp16 cache of the same shape (the faster of enable_gqa and
    folding a kv head's query heads into q_len), (b) dequantize_state (kivi_core.attention_ref) + SDPA,
    i.e. what transformers' QuantizedCache does every step.
Each kernel named in --impl is timed on the same states; every row records its impl, and the table prints
them side by side (the baselines are measured once per row). v1: tensor-core tiles, any shape. v3: one
query row a program on CUDA cores (kernels/decode_attention_v3.py), with its defaults: the fp16x2 packed
path at k2v2 fp16; on the GQA shape a program a query head (what "auto" picks for one-token decode). v3f:
v3's fp32 path, packed=False. Each kernel and SDPA are also timed replayed from a CUDA graph ("graph us",
`graph_us`): the GPU time of a call with the host out of the way, as inside the lean engine's graphs; the
eager columns include the host's launch time where it exceeds the GPU's (batch 1). Writes JSON (device,
versions, command, rows) to $OUT/ when OUT is set, else benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

from kivi_core.attention_ref import dequantize_state
from kivi_core.state import KiviState
from kivi_kernels.decode_attention import _default_block_n, _num_splits, decode_attention_triton, pick_impl
from kivi_kernels import decode_attention_gqa as dgq
from kivi_kernels.decode_attention_gqa import decode_attention_gqa
import kivi_kernels.decode_attention_v3 as da3
from kivi_kernels.decode_attention_v3 import (DEFAULT_BLOCK_W, DEFAULT_WARPS, MMA_WARPS, decode_attention_v3, default_mma,
                                             num_splits_v3, splits_v3)
from kivi_kernels.quant_pack import quantize_keys_triton, quantize_values_triton

SHAPES = {"llama2-7b": (32, 32), "llama3.1-8b": (32, 8), "llama3.1-70b": (64, 8)}  # (q heads, kv heads), head_dim 128
ROWS = [(1, 512), (1, 32768), (8, 32768), (16, 16384), (64, 4096), (128, 4096)]
TARGET_ROWS = [(1, 512), (8, 32768), (64, 4096)]  # the rows with targets (issue 3)
IMPLS = ("auto", "v1", "v3", "v3f", "gqa", "gqap", "gqaf")  # auto: what a model's calls run (pick_impl and each
# kernel's own rules); v3: the default (packed fp16x2 pairs at k2v2 fp16); v3f: its
# fp32 path; gqa / gqap / gqaf: the shared-dequantization GQA kernel (kernels/decode_attention_gqa.py; GQA shapes
# only) at its defaults (the tensor-core bulk where it maps) / its fp16x2 pair path / its fp32 path
D, G, R = 128, 32, 128
L2_BYTES = 60 * 2**20  # H200: 60 MB
# (block_n, num_warps, split-count scale, use_dot or None = default) tried by --sweep
SWEEP = [(32, 4, 1.0, None), (64, 8, 1.0, None), (128, 8, 1.0, None), (128, 4, 1.0, None), (64, 4, 2.0, None),
         (64, 4, 0.5, None), (64, 4, 1.0, True), (32, 4, 1.0, True), (128, 8, 1.0, True)]
SWEEP_ROWS = [(1, 512), (1, 32768), (8, 32768), (64, 4096)]  # the rows with targets


@dataclass
class Row:
    impl: str
    shape: str
    batch: int
    ctx: int
    kivi_us: float
    kivi_bytes: int
    kivi_tbps: float
    frac_copy_bw: float
    sdpa_fp16_us: float | None
    sdpa_fp16_tbps: float | None
    speedup_vs_sdpa: float | None
    dequant_sdpa_us: float | None
    speedup_vs_dequant: float | None
    num_splits: int
    block_n: int
    num_warps: int
    launch_us: float | None = None  # host time of one call, synchronizing only at the end (launch-bound?)
    graph_us: float | None = None  # GPU time of one call replayed from a CUDA graph, L2 flushed before it
    sdpa_graph_us: float | None = None  # the same for fp16 SDPA
    speedup_vs_sdpa_graph: float | None = None
    notes: list[str] = field(default_factory=list)


def state_bytes(B, H, L, n_kq, n_vq, k_bits=2, v_bits=2) -> int:
    per_head = (
        n_kq * D * k_bits // 8 + (n_kq // G) * D * 2 * 2 + (L - n_kq) * D * 2
        + n_vq * D * v_bits // 8 + n_vq * (D // G) * 2 * 2 + (L - n_vq) * D * 2
    )
    return B * H * per_head


def make_state(B, H, L, n_kq, n_vq, dtype=torch.float16, k_bits=2, v_bits=2) -> KiviState:
    """Random packed storage (random codes: timing must not run on zeros), capacity = what is used."""
    dev = "cuda"
    ck, cv = 32 // k_bits, 32 // v_bits
    ri = lambda *s: torch.randint(-(2**31), 2**31 - 1, s, device=dev, dtype=torch.int32)  # noqa: E731
    rs = lambda *s: (torch.rand(*s, device=dev) * 0.1).to(dtype)  # noqa: E731
    rm = lambda *s: (torch.randn(*s, device=dev) * 0.5).to(dtype)  # noqa: E731
    return KiviState(
        ri(B, H, max(n_kq, G) // ck, D), rs(B, H, max(n_kq, G) // G, D), rm(B, H, max(n_kq, G) // G, D), n_kq,
        torch.randn(B, H, L - n_kq, D, device=dev, dtype=dtype),
        ri(B, H, max(n_vq, 1), D // cv), rs(B, H, max(n_vq, 1), D // G), rm(B, H, max(n_vq, 1), D // G), n_vq,
        torch.randn(B, H, L - n_vq, D, device=dev, dtype=dtype),
        k_bits, v_bits, G,
    )


def kivi_split(L: int) -> tuple[int, int]:
    return L // R * R, max(0, L - R)


def copy_bandwidth() -> float:
    """Device-to-device copy of 4 GiB; bytes read + written per second (TB/s)."""
    src = torch.randn(2**30, device="cuda")  # 4 GiB fp32
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median")
    del src, dst
    torch.cuda.empty_cache()
    return 2 * 4 * 2**30 / (ms * 1e-3) / 1e12


def n_sets(bytes_per_set: int) -> int:
    # Rotate inputs so that the working set is >= 3x L2 (do_bench also clears L2 before each call).
    return max(1, min(16, math.ceil(3 * L2_BYTES / max(bytes_per_set, 1))))


def bench_rotating(fns) -> float:
    it = [0]

    def call():
        fns[it[0] % len(fns)]()
        it[0] += 1

    return do_bench(call, warmup=25, rep=100, return_mode="median")


def sdpa_fp16(B, Hq, H, L, sets):
    """Best fp16 SDPA over a cache of the same shape: enable_gqa, or a kv head's queries as q_len."""
    ks = [torch.randn(B, H, L, D, device="cuda", dtype=torch.float16) for _ in range(sets)]
    vs = [torch.randn(B, H, L, D, device="cuda", dtype=torch.float16) for _ in range(sets)]
    q = torch.randn(B, Hq, 1, D, device="cuda", dtype=torch.float16)
    qf = q.view(B, H, Hq // H, D)  # [B, H, group as q_len, D]: same math for one decode token
    gqa = [lambda k=k, v=v: F.scaled_dot_product_attention(q, k, v, enable_gqa=Hq != H) for k, v in zip(ks, vs)]
    fold = [lambda k=k, v=v: F.scaled_dot_product_attention(qf, k, v) for k, v in zip(ks, vs)]
    t_gqa, t_fold = bench_rotating(gqa), bench_rotating(fold)
    t_graph = graph_us(gqa if t_gqa <= t_fold else fold)
    del ks, vs
    torch.cuda.empty_cache()
    return min(t_gqa, t_fold), t_graph, {"enable_gqa_us": t_gqa * 1e3, "folded_us": t_fold * 1e3}


def dequant_sdpa(state, query, Hq, H):
    def run():
        k, v = dequantize_state(state)
        return F.scaled_dot_product_attention(query, k, v, enable_gqa=Hq != H)

    return do_bench(run, warmup=1, rep=20, return_mode="median")


L2_FLUSH_BYTES = 128 * 2**20  # > L2: a write of this evicts the previous call's inputs
GRAPH_CALLS, GRAPH_REPS = 32, 11


def graph_us(fns) -> float:
    """GPU time a call with no host in the way, as in a decoder replayed from CUDA graphs (the lean engine):
    GRAPH_CALLS calls (rotating over fns), each after an L2 flush, captured in one graph, minus a graph of
    the flushes alone; median of GRAPH_REPS replays. The eager timings above include the host's launch
    time whenever it exceeds the GPU's (batch 1: two Triton launches vs one SDPA)."""
    flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda")
    for f in fns:  # eagerly first: compiles, and lets cuDNN allocate its workspace outside the capture
        f()
    torch.cuda.synchronize()

    def timed(with_calls: bool) -> float:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for i in range(GRAPH_CALLS):
                flush.zero_()
                if with_calls:
                    fns[i % len(fns)]()
        g.replay()
        torch.cuda.synchronize()
        ms = []
        for _ in range(GRAPH_REPS):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            g.replay()
            b.record()
            b.synchronize()
            ms.append(a.elapsed_time(b))
        del g
        return sorted(ms)[len(ms) // 2]

    t = (timed(True) - timed(False)) / GRAPH_CALLS * 1e3
    del flush
    torch.cuda.empty_cache()
    return t


def host_us(fn, n=200) -> float:
    """Wall time a call when calls are queued back to back (launch overhead shows when it exceeds GPU time)."""
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def bench_row(shape, B, ctx, copy_tbps, impls=IMPLS, baselines=True, block_n=None, num_warps=None, splits_scale=1.0,
              use_dot=None, block_w=None) -> list[Row]:
    """One (shape, B x ctx) row per impl, on the same states; baselines measured once and shared."""
    Hq, H = SHAPES[shape]
    L = ctx
    n_kq, n_vq = kivi_split(L)
    nbytes = state_bytes(B, H, L, n_kq, n_vq)
    sets = n_sets(nbytes)
    states = [make_state(B, H, L, n_kq, n_vq) for _ in range(sets)]
    query = torch.randn(B, Hq, 1, D, device="cuda", dtype=torch.float16)
    timed = []
    picked = {}
    for impl in impls:
        if impl == "auto":  # the launchers' own rules: the row reports the kernel picked, its tiles and splits as 0
            picked[impl] = pick_impl(query, states[0])
            bn = S = 0
            kw = dict(impl="auto")
        elif impl == "v1":
            bn = block_n or _default_block_n(D)
            S = max(1, round(_num_splits(B * H, L, bn, query.device) * splits_scale))
            kw = dict(impl="v1", block_n=bn, num_warps=num_warps or 4, num_splits=S, use_dot=use_dot)
        elif impl == "gqa" and dgq.default_gqa_mma(query, states[0], D**-0.5):
            if Hq == H:
                continue
            bn = 32 * dgq.MMA_WARPS  # the launcher's defaults: its tensor-core bulk, a key group a warp
            S = splits_v3(B * H, L, bn, 16, dgq.mma_splits(B * H, L, dgq.window_launch_pays(B * H, L)))[0]
            kw = dict(num_warps=dgq.MMA_WARPS)
        elif impl in ("gqa", "gqap", "gqaf"):
            if Hq == H:
                continue
            packed = impl != "gqaf"
            bw = dgq.PACKED_BLOCK_W if packed else dgq.DEFAULT_BLOCK_W
            bn = bw * 16
            S = splits_v3(B * H, L, bn, 16)[0]  # programs by kv head
            kw = dict(packed=packed, block_w=bw, mma=False,
                      num_warps=2 * bw // 32 if packed else dgq.DEFAULT_WARPS)
        elif impl == "v3" and block_w is None and num_warps is None and splits_scale == 1.0:
            # the launcher's own defaults, as a model's calls get them: the tensor-core bulk where default_mma
            # picks it, else the packed path
            mma = default_mma(query, states[0])
            bn = 8 * MMA_WARPS * 16 if mma else DEFAULT_BLOCK_W * 16
            S = splits_v3(B * Hq, L, bn, 16, programs=da3.SPLIT_PROGRAMS_MMA_SH if mma and da3.MMA_SHFL
                          else da3.SPLIT_PROGRAMS)[0]
            kw = {}
        else:  # v3 with tuning overrides (the packed path here), or v3f: v3's fp32 path (packed=False)
            bw = block_w or DEFAULT_BLOCK_W
            bn = bw * 16  # tokens a key tile at 2 bits
            nw = num_warps or DEFAULT_WARPS
            packed = None if impl == "v3" else False  # None: the launcher's default (packed here)
            S = max(1, round(num_splits_v3(B * Hq, L, bn) * splits_scale))  # bulk splits (programs by query head)
            kw = dict(block_w=bw, num_warps=nw, num_splits=S, packed=packed)
            S = splits_v3(B * Hq, L, bn, 16, S)[0]  # + the window / tail split
        call = {"auto": decode_attention_triton, "v1": decode_attention_triton, "gqa": decode_attention_gqa,
                "gqap": decode_attention_gqa, "gqaf": decode_attention_gqa}.get(impl, decode_attention_v3)
        t = bench_rotating([lambda s=s, kw=kw, call=call: call(query, s, None, D**-0.5, **kw) for s in states])
        t_host = host_us(lambda kw=kw, call=call: call(query, states[0], None, D**-0.5, **kw))
        t_graph = graph_us([lambda s=s, kw=kw, call=call: call(query, s, None, D**-0.5, **kw) for s in states])
        timed.append((impl, t, t_host, S, bn, kw, t_graph))
    t_sdpa = t_deq = t_sdpa_graph = None
    extra = {}
    errs = {}
    notes = []
    if baselines:
        # correctness spot check against the dequantize-then-SDPA path on the same state
        k, v = dequantize_state(states[0])
        ref = F.scaled_dot_product_attention(query, k, v, enable_gqa=Hq != H).transpose(1, 2)
        for impl, _, _, _, _, kw, _ in timed:
            call = {"auto": decode_attention_triton, "v1": decode_attention_triton, "gqa": decode_attention_gqa,
                    "gqap": decode_attention_gqa, "gqaf": decode_attention_gqa}.get(impl, decode_attention_v3)
            got = call(query, states[0], None, D**-0.5, **kw)
            errs[impl] = (got.float() - ref.float()).abs().max().item()
        del k, v, ref
        torch.cuda.empty_cache()
        try:
            t_sdpa, t_sdpa_graph, extra = sdpa_fp16(B, Hq, H, L, n_sets(2 * B * H * L * D * 2))
        except torch.OutOfMemoryError:
            notes.append("fp16 SDPA: OOM")
        try:
            t_deq = dequant_sdpa(states[0], query, Hq, H)
        except torch.OutOfMemoryError:
            notes.append("dequant+SDPA: OOM")
        torch.cuda.empty_cache()
    notes += [f"{k} {v:.1f}" for k, v in extra.items()]
    fp16_bytes = 2 * B * H * L * D * 2
    del states
    torch.cuda.empty_cache()
    rows = []
    for impl, t, t_host, S, bn, kw, t_graph in timed:
        tbps = nbytes / (t * 1e-3) / 1e12
        n = list(notes)
        if impl in errs:
            n.insert(0, f"max|err| vs dequant+SDPA {errs[impl]:.2e}")
        if impl in picked:
            n.insert(0, f"auto ran {picked[impl]}")
        rows.append(Row(
            impl, shape, B, ctx, t * 1e3, nbytes, tbps, tbps / copy_tbps,
            None if t_sdpa is None else t_sdpa * 1e3,
            None if t_sdpa is None else fp16_bytes / (t_sdpa * 1e-3) / 1e12,
            None if t_sdpa is None else t_sdpa / t,
            None if t_deq is None else t_deq * 1e3,
            None if t_deq is None else t_deq / t,
            S, bn, 0 if impl == "auto" else kw.get("num_warps", MMA_WARPS if bn == 8 * MMA_WARPS * 16 else DEFAULT_WARPS),
            t_host, t_graph,
            t_sdpa_graph, None if t_sdpa_graph is None else t_sdpa_graph / t_graph, n,
        ))
    return rows


def bench_quantize() -> dict:
    """Quantize a 4096-token prompt at Llama-2-7B shape (1 x 32 heads x 4096 x 128, fp16, 2-bit, G=32)."""
    B, H, T = 1, 32, 4096
    k = torch.randn(B, H, T, D, device="cuda", dtype=torch.float16)
    v = torch.randn(B, H, T, D, device="cuda", dtype=torch.float16)
    kc = torch.empty(B, H, T // 16, D, device="cuda", dtype=torch.int32)
    ks = torch.empty(B, H, T // G, D, device="cuda", dtype=torch.float16)
    km = torch.empty_like(ks)
    vc = torch.empty(B, H, T, D // 16, device="cuda", dtype=torch.int32)
    vs = torch.empty(B, H, T, D // G, device="cuda", dtype=torch.float16)
    vm = torch.empty_like(vs)
    tk = do_bench(lambda: quantize_keys_triton(k, 2, G, None, (kc, ks, km)), return_mode="median")
    tv = do_bench(lambda: quantize_values_triton(v, 2, G, (vc, vs, vm)), return_mode="median")
    moved = 2 * k.numel() * 2 + (kc.numel() + vc.numel()) * 4 + (ks.numel() + vs.numel()) * 4
    return {"keys_us": tk * 1e3, "values_us": tv * 1e3, "tbps": moved / ((tk + tv) * 1e-3) / 1e12,
            "per_layer_us": (tk + tv) * 1e3}


def versions() -> dict:
    try:
        import transformers

        tv = transformers.__version__
    except Exception:  # pragma: no cover
        tv = None
    return {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
        "transformers": tv, "python": platform.python_version(), "cuda": torch.version.cuda,
    }


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def table(rows: list[Row], copy_tbps: float) -> str:
    head = (f"{'impl':<4} {'shape':<12} {'B x ctx':>10} {'kivi us':>9} {'TB/s':>6} {'%copy':>6} {'sdpa us':>9} "
            f"{'x sdpa':>7} {'deq+sdpa us':>12} {'x deq':>7} {'S':>4} {'BN':>4} {'W':>2} {'host us':>8} "
            f"{'graph us':>9} {'sdpa g us':>9} {'x sdpa g':>8}")
    lines = [f"copy bandwidth (read+write): {copy_tbps:.2f} TB/s", head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.impl:<4} {r.shape:<12} {f'{r.batch}x{r.ctx}':>10} {r.kivi_us:9.1f} {r.kivi_tbps:6.2f} "
            f"{100 * r.frac_copy_bw:5.1f}% {fmt(r.sdpa_fp16_us, '9.1f')} {fmt(r.speedup_vs_sdpa, '7.2f')} "
            f"{fmt(r.dequant_sdpa_us, '12.1f')} {fmt(r.speedup_vs_dequant, '7.1f')} {r.num_splits:4d} "
            f"{r.block_n:4d} {r.num_warps:2d} {fmt(r.launch_us, '8.1f')} {fmt(r.graph_us, '9.1f')} "
            f"{fmt(r.sdpa_graph_us, '9.1f')} {fmt(r.speedup_vs_sdpa_graph, '8.2f')}"
        )
    return "\n".join(lines)


# v3 sweep: (block_w, num_warps, split-count scale)
SWEEP_V3 = [(128, 4, 0.5), (128, 4, 2.0), (64, 2, 1.0), (64, 4, 1.0), (128, 8, 1.0), (32, 2, 1.0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=None,
                    help="comma list like 8x32768,64x4096, or 'targets' (1x512,8x32768,64x4096); default: all six")
    ap.add_argument("--shapes", default="llama2-7b,llama3.1-8b", help=f"comma list of {', '.join(SHAPES)}")
    ap.add_argument("--impl", default=",".join(IMPLS), help="kernels to time side by side (auto, v1, v3, v3f, gqa, gqap, gqaf)")
    ap.add_argument("--sweep", action="store_true", help="also sweep tiles / warps / splits (no baselines)")
    ap.add_argument("--no-baselines", action="store_true")
    args = ap.parse_args()
    if args.rows is None:
        rows = ROWS
    elif args.rows == "targets":
        rows = TARGET_ROWS
    else:
        rows = [tuple(int(x) for x in r.split("x")) for r in args.rows.split(",")]
    shapes = args.shapes.split(",")
    impls = tuple(args.impl.split(","))
    if not set(impls) <= set(IMPLS):
        ap.error(f"--impl {args.impl}: use a comma list of {', '.join(IMPLS)}")
    torch.manual_seed(0)
    copy_tbps = copy_bandwidth()
    print(f"copy bandwidth {copy_tbps:.2f} TB/s", flush=True)
    results: list[Row] = []
    for shape in shapes:
        for B, ctx in rows:
            for r in bench_row(shape, B, ctx, copy_tbps, impls=impls, baselines=not args.no_baselines):
                print(r, flush=True)
                results.append(r)
    sweep: list[Row] = []
    if args.sweep:
        configs = []
        if "v1" in impls:
            configs += [("v1", dict(block_n=bn, num_warps=nw, splits_scale=sc, use_dot=ud)) for bn, nw, sc, ud in SWEEP]
        if "v3" in impls:
            configs += [("v3", dict(block_w=bw, num_warps=nw, splits_scale=sc)) for bw, nw, sc in SWEEP_V3]
        for shape in shapes:
            for B, ctx in rows:
                if (B, ctx) not in SWEEP_ROWS:
                    continue
                for impl, cfg in configs:
                    if (cfg.get("use_dot") is not None or impl != "v1") and SHAPES[shape][0] != SHAPES[shape][1]:
                        continue  # the dot-free path and v3 are for one query row per kv head
                    try:
                        (r,) = bench_row(shape, B, ctx, copy_tbps, impls=(impl,), baselines=False, **cfg)
                    except Exception as e:  # a config that does not compile (registers / shared memory)
                        print(f"sweep {impl} {shape} {B}x{ctx} {cfg}: {type(e).__name__}: {e}", flush=True)
                        continue
                    r.notes.append(str(cfg))
                    print(f"sweep {impl} {shape} {B}x{ctx} {cfg} S={r.num_splits}: {r.kivi_us:.1f} us "
                          f"{r.kivi_tbps:.2f} TB/s", flush=True)
                    sweep.append(r)
    quant = bench_quantize()
    print(f"quantize 1x32x4096x128 fp16 k2v2 G=32: keys {quant['keys_us']:.1f} us, values {quant['values_us']:.1f} "
          f"us ({quant['tbps']:.2f} TB/s)", flush=True)
    info = versions() | {
        "command": " ".join([sys.executable, *sys.argv]), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "copy_tbps": copy_tbps, "config": {"k_bits": 2, "v_bits": 2, "group_size": G, "residual": R, "head_dim": D,
                                            "dtype": "float16", "q_len": 1},
        "rows": [asdict(r) for r in results], "sweep": [asdict(r) for r in sweep], "quantize": quant,
    }
    out_dir = os.environ.get("OUT") or os.path.join(os.path.dirname(__file__), "results")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "bench_decode_attention.json")
    with open(path, "w") as f:
        json.dump(info, f, indent=1)
    print(f"wrote {path}")
    print(table(results, copy_tbps))


if __name__ == "__main__":
    main()
