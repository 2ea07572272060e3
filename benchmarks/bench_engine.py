"""Lean decode loop (kivi_core.engine) on the GPU: KIVI vs fp16, both as CUDA-graph loops over static caches.

    python3 benchmarks/bench_engine.py [--kernels] [--arch NAME] [ROW ...]   ROW = side:batch:ctx[:eager], side = kivi | fp16
    default rows: issue 6's (b1 x 512 both sides, fp16 b32/b48 x 4096, KIVI b64/b128/b192 x 4096)

Llama-2-7B shape with random weights (kivi_cli preset `llama-2-7b`, or --arch NAME: another preset, e.g.
llama-3.1-8b for GQA; fp16), greedy, prompt = ctx - 64
random tokens, 64 new tokens, prefill in chunks of 1024. For each row: steady-state GPU time a decode
step (CUDA events from the first graph replay to the end, no host sync in between), tokens/s =
batch / step time, the prefill time, torch's peak allocated bytes, the step kinds run (eager / capture /
replay), or OOM. Writes $OUT/bench_engine.json (else benchmarks/results/).

--kernels: where a step's GPU time goes. torch.profiler (CUDA activity, which records the kernels that
graph replays launch) covers decode steps KSTEP0 .. KSTEP0 + KSTEPS - 1 of each row; the host waits for
each of those steps, so the window holds exactly those steps' kernels. Per row: kernel time a step by
category and the 12 largest kernels; busy = the sum of kernel times a step, against the window's GPU span
a step. The profiler slows the steps around its window, so a --kernels row's ms_per_step is not a
throughput number (H200 fp16 b59 x 4096: 41.6 ms vs 35.6 without): time throughput without it.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import torch

from kivi_cli.models import PRESETS
from kivi_core import KiviConfig
from kivi_core.engine import lean_generate

DEFAULT = ["kivi:1:512", "fp16:1:512", "kivi:1:512:eager", "fp16:32:4096", "fp16:48:4096", "kivi:64:4096",
           "kivi:128:4096", "kivi:192:4096", "fp16:64:4096"]
GEN = 64
KSTEP0, KSTEPS = 8, 8  # profiled decode steps: past the first replays (steps 1-2 run eagerly / capture)
# kernel categories, by name (the first that matches): Triton kernels keep their names, cuBLAS's carry
# gemm / nvjet / xmma / cutlass, torch's SDPA flash / fmha / attention
CATEGORIES = [
    ("attention, KIVI", ("_decode_attn_v3", "_decode_attn_gqa", "_decode_attn_split")),
    ("attention, split reduce", ("_decode_attn_reduce",)),
    ("attention, fp16 SDPA", ("flash", "fmha", "attention")),
    ("KIVI cache append / quantize", ("_append_kernel", "_slide_kernel", "_quantize_")),
    ("matmul", ("gemm", "nvjet", "xmma", "cutlass", "cublas")),
]
OTHER = "other (norms, RoPE, activations, copies)"


def category(name: str) -> str:
    low = name.lower()
    return next((c for c, keys in CATEGORIES if any(k in low for k in keys)), OTHER)


def summarize_trace(path: str, steps: int) -> dict:
    """Kernel time a step from a Chrome trace of `steps` decode steps: by category and the 12 largest."""
    with open(path) as f:
        events = json.load(f).get("traceEvents", [])
    by_name: dict[str, list[float]] = {}
    first, last = float("inf"), 0.0
    for e in events:
        if e.get("ph") == "X" and e.get("cat") == "kernel":
            by_name.setdefault(e["name"], []).append(float(e["dur"]))  # microseconds
            first, last = min(first, float(e["ts"])), max(last, float(e["ts"]) + float(e["dur"]))
    by_cat: dict[str, float] = {}
    for name, durs in by_name.items():
        by_cat[category(name)] = by_cat.get(category(name), 0.0) + sum(durs) / steps
    top = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:12]
    # span: first kernel start to last kernel end over the window, a step (the host's waits between steps
    # add a launch latency each, ~0.1% of a step): the step's GPU time without the profiler's slowdown of
    # the steps around the window, which the row's ms_per_step includes (fp16 b59: 41.6 ms vs 35.6 without)
    return {"steps": steps, "busy_ms_per_step": sum(by_cat.values()) / 1e3,
            "span_ms_per_step": (last - first) / steps / 1e3 if by_name else None,
            "us_per_step_by_category": dict(sorted(by_cat.items(), key=lambda kv: -kv[1])),
            "top": [{"name": n[:120], "calls_per_step": len(d) / steps, "us_per_step": sum(d) / steps}
                    for n, d in top]}


class KernelWindow:
    """`on_step` for lean_generate: profiles decode steps KSTEP0 .. KSTEP0 + KSTEPS - 1, waiting for each."""

    def __init__(self, tmpdir: str):
        from torch.profiler import ProfilerActivity, profile, schedule

        self.path = os.path.join(tmpdir, "trace.json")
        self.prof = profile(activities=[ProfilerActivity.CUDA],
                            schedule=schedule(wait=KSTEP0 - 1, warmup=0, active=KSTEPS, repeat=1),
                            on_trace_ready=lambda p: p.export_chrome_trace(self.path))
        self.prof.start()

    def __call__(self, i: int) -> None:
        if KSTEP0 - 1 <= i < KSTEP0 + KSTEPS:  # the steps before and in the window have run when it moves
            torch.cuda.synchronize()
        self.prof.step()

    def result(self) -> dict | None:
        self.prof.stop()
        return summarize_trace(self.path, KSTEPS) if os.path.exists(self.path) else None


def main() -> None:
    args = sys.argv[1:]
    kernels = "--kernels" in args
    arch = "llama-2-7b"
    if "--arch" in args:
        i = args.index("--arch")
        if i + 1 >= len(args) or args[i + 1] not in PRESETS:
            sys.exit(f"--arch needs one of {', '.join(PRESETS)}")
        arch = args[i + 1]
        del args[i : i + 2]
    rows = [a for a in args if a != "--kernels"] or DEFAULT
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(PRESETS[arch].config(), dtype=torch.float16)
    model.eval().requires_grad_(False)
    results = []
    for row in rows:
        side, B, ctx, *flag = row.split(":")
        B, ctx = int(B), int(ctx)
        eager = flag == ["eager"]
        kivi = KiviConfig(k_bits=2, v_bits=2, group_size=32, residual_length=128) if side == "kivi" else None
        ids = torch.randint(3, min(32000, model.config.vocab_size), (B, ctx - GEN), device="cuda")
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        rec = dict(side=side, batch=B, ctx=ctx, gen=GEN, graphs=not eager)
        t0 = time.perf_counter()
        tmp = tempfile.TemporaryDirectory() if kernels else None
        window = KernelWindow(tmp.name) if tmp is not None else None
        try:
            res = lean_generate(model, ids, GEN, kivi, graphs=not eager, prefill_chunk=1024, on_step=window)
            torch.cuda.synchronize()
            if window is not None:
                rec["kernels"] = window.result()
                window = None
            ms = res.steady_ms_per_step
            if ms is None:  # eager: wall time of the decode loop
                ms = res.decode_s * 1e3 / (GEN - 1)
            rec.update(status="ok", ms_per_step=ms, tok_per_s=B / ms * 1e3, prefill_s=res.prefill_s,
                       decode_s=res.decode_s, steady_steps=res.steady_steps, step_kinds=res.step_kinds,
                       peak_alloc_gb=(torch.cuda.max_memory_allocated()) / 1e9,
                       cache_gb=res.cache.memory().total / 1e9 if res.cache is not None else None,
                       weights_gb=base / 1e9)
            del res
        except torch.OutOfMemoryError as e:
            rec.update(status="oom", error=str(e).splitlines()[0][:200])
        finally:
            if window is not None:
                window.prof.stop()
            if tmp is not None:
                tmp.cleanup()
        rec["wall_s"] = time.perf_counter() - t0
        print(json.dumps(rec), flush=True)
        results.append(rec)
        del ids
        torch.cuda.empty_cache()
    info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "arch": arch,
            "command": " ".join([sys.executable, *sys.argv]), "rows": results}
    try:
        import transformers
        import triton

        info |= {"transformers": transformers.__version__, "triton": triton.__version__}
    except Exception:  # pragma: no cover
        pass
    out = os.environ.get("OUT") or os.path.join(os.path.dirname(__file__), "results")
    with open(os.path.join(out, "bench_engine.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"{'side':<5} {'B':>4} {'ctx':>5} {'graphs':>6} {'ms/step':>8} {'tok/s':>8} {'peak GB':>8} {'cache GB':>8}")
    for r in results:
        if r["status"] != "ok":
            print(f"{r['side']:<5} {r['batch']:>4} {r['ctx']:>5} {str(r['graphs']):>6}  OOM")
            continue
        print(f"{r['side']:<5} {r['batch']:>4} {r['ctx']:>5} {str(r['graphs']):>6} {r['ms_per_step']:8.2f} "
              f"{r['tok_per_s']:8.0f} {r['peak_alloc_gb']:8.1f} {r['cache_gb'] or 0:8.1f}")
    for r in results:
        k = r.get("kernels")
        if not k:
            continue
        print(f"\n{r['side']} b{r['batch']} x {r['ctx']}: {k['steps']} steps profiled, GPU span "
              f"{k['span_ms_per_step']:.2f} ms a step, kernels busy {k['busy_ms_per_step']:.2f} ms")
        for cat, us in k["us_per_step_by_category"].items():
            print(f"  {cat:<42} {us / 1e3:8.2f} ms  {us / 1e3 / k['span_ms_per_step']:6.1%}")
        for t in k["top"]:
            print(f"    {t['us_per_step']:9.1f} us {t['calls_per_step']:6.1f}x  {t['name'][:80]}")


if __name__ == "__main__":
    main()
