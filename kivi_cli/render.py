"""Renderers: result data -> a Rich table / streamed text for people, JSON for scripts, a PNG plot.

Each takes the `Output` sink and a result; nothing else in kivi_cli formats numbers for people.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from kivi_cli.errors import RuntimeFailure
from kivi_cli.metrics import STATUS_OK, ProfileReport, Side
from kivi_cli.output import Output, fmt_bytes, fmt_num, fmt_ratio, fmt_seconds


# --- generate ---------------------------------------------------------------------------------------------
def render_generation(out: Output, record: dict) -> None:
    if out.json:
        out.record({k: v for k, v in record.items() if not k.startswith("_")})
        return
    if record.get("error"):
        where = f"line {record['line']}" if record.get("line") else f"prompt #{record['index']}"
        out.warn(f"{where}: {record['error']}")
        return
    if not record.get("_streamed"):
        out.text(record["prompt"], style="bold")
        out.text(record["text"])


def render_generation_summary(out: Output, loaded, kivi, results: list[dict]) -> None:
    ok = [r for r in results if not r.get("error")]
    if out.json or not ok:
        return
    tps = [r["decode_tokens_per_s"] for r in ok if r.get("decode_tokens_per_s")]
    last = ok[-1]
    ratio = last["cache_bytes_full_precision"] / last["cache_bytes"] if last["cache_bytes"] else None
    ran = dict.fromkeys(r["loop"] for r in ok)  # in order of first use; both under auto with mixed batches
    loop = " and ".join({"lean": "lean loop", "generate": "plain loop"}[k] for k in ran)
    out.table(
        f"kivi generate — {loaded.name}, {last['kivi']}, {loop}",
        ["prompts", "new tokens", "decode tok/s", "KV cache (last batch)", "full precision", "ratio"],
        [[f"{len(ok)}/{len(results)}", sum(r["generated_tokens"] for r in ok),
          fmt_num(sum(tps) / len(tps)) if tps else "n/a", fmt_bytes(last["cache_bytes"]),
          fmt_bytes(last["cache_bytes_full_precision"]), fmt_ratio(ratio)]],
    )


# --- chat -------------------------------------------------------------------------------------------------
def chat_status_line(new_tokens: int, tokens_per_s: Optional[float], held: int, full: int, cached: int) -> str:
    ratio = "" if not held else (f", {full / held:.2f}x smaller" if full >= held else f", {held / full:.2f}x larger")
    return (f"[{new_tokens} tokens, {fmt_num(tokens_per_s)} tok/s | KV cache {fmt_bytes(held)} for {cached} tokens "
            f"(full precision: {fmt_bytes(full)}{ratio})]")


def render_chat_stats(out: Output, stats: dict) -> None:
    out.table("kivi chat — /stats", ["", "value"], [
        ["model", stats["model"]],
        ["cache", stats["kivi"]],
        ["turns", stats["turns"]],
        ["tokens in cache", stats["cached_tokens"]],
        ["KV bytes held", fmt_bytes(stats["cache_bytes"])],
        ["full precision would hold", fmt_bytes(stats["cache_bytes_full_precision"])],
        ["last reply tok/s", fmt_num(stats.get("last_tokens_per_s"))],
    ])


# --- profile ----------------------------------------------------------------------------------------------
def _prefill_rows_note(report: ProfileReport) -> str:
    if report.prefill_batch is None:
        from kivi_core.engine import PREFILL_TOKEN_BUDGET

        return f", prefill by rows (automatic: rows x prompt <= {PREFILL_TOKEN_BUDGET} tokens)"
    return f", prefill {report.prefill_batch} rows at a time" if report.prefill_batch else ""


def render_profile(out: Output, report: ProfileReport) -> None:
    if out.json:
        out.document(report.as_dict())
        return
    env = report.environment
    title = (f"kivi profile — {report.model} on {env.get('device_name', report.device)} ({report.dtype}); "
             f"batch {report.batch}, ctx {report.ctx} = prompt {report.prompt_len} + {report.gen} generated"
             + (f", prefill in chunks of {report.prefill_chunk}" if report.prefill_chunk else "")
             + _prefill_rows_note(report)
             + ("; lean loop (CUDA graphs on CUDA)" if report.loop == "lean" else "; plain decode loop"))
    base = report.sides[0]
    columns = ["", *(s.name for s in report.sides)]
    rows = []

    def row(label: str, fn):
        rows.append([label, *(fn(s) for s in report.sides)])

    def ratio(key: str, speed: bool = False):
        def cell(s: Side) -> str:
            if s is base:
                return ""
            r = s.ratios.get(key)
            return "" if r is None else (f" ({r:.2f}x)" if speed else f" ({r:.2f}x smaller)")
        return cell

    def mem(attr: str, key: str):
        return lambda s: fmt_bytes(getattr(s.memory, attr) if s.memory else None) + ratio(key)(s)

    row("status", lambda s: s.status if s.status == STATUS_OK else s.status.upper())
    if report.find_max_batch:
        row("max batch (search)", lambda s: str(s.max_batch))
        row(f"measured at (margin {100 * (report.safety_margin or 0):.0f}%)", lambda s: str(s.batch))
        row("measured at batch", lambda s: str(s.batch))
    row("KV cache, analytic", mem("analytic_kv_bytes", "analytic_kv_x_smaller"))
    row("KV cache, held", mem("cache_bytes", "cache_bytes_x_smaller"))
    row("torch peak allocated", mem("torch_peak_allocated_bytes", "torch_peak_x_smaller"))
    row("NVML peak used", mem("nvml_peak_used_bytes", "nvml_peak_x_smaller"))
    row("prefill", lambda s: fmt_seconds(s.timing.prefill_s) if s.timing else "n/a")
    row("decode tok/s", lambda s: (fmt_num(s.timing.decode_tokens_per_s) if s.timing else "n/a")
        + ratio("decode_tokens_per_s_x", speed=True)(s))
    row("wall ms / step", lambda s: fmt_num(s.timing.wall_ms_per_step, 2) if s.timing else "n/a")
    row("GPU ms / step (events)", lambda s: fmt_num(s.timing.gpu_ms_per_step, 2) if s.timing else "n/a")
    row("GPU busy ms / step", lambda s: fmt_num(s.timing.gpu_busy_ms_per_step, 2) if s.timing else "n/a")
    notes = [f"{s.name}: {s.status.upper()} — {s.error}" for s in report.sides if s.status != STATUS_OK and s.error]
    caption = (f"torch {env.get('torch')}, transformers {env.get('transformers')}, kivi {env.get('kivi')}. "
               "Same decode loop for every side; NVML counts the whole device (context and allocator cache too).")
    out.table(title, columns, rows, caption=caption)
    for note in notes:
        out.hint(note[:300])


def plot_profile(report: ProfileReport, path: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeFailure("--plot needs matplotlib: pip install 'kivi[plot]' (or pip install matplotlib).") from None
    names = [s.name for s in report.sides]
    gb = lambda v: (v or 0) / 1e9  # noqa: E731
    fig, (ax_mem, ax_tps) = plt.subplots(1, 2, figsize=(11, 4.2))
    x = range(len(names))
    width = 0.38
    ax_mem.bar([i - width / 2 for i in x], [gb(s.memory.analytic_kv_bytes if s.memory else 0) for s in report.sides],
               width, label="KV cache (analytic)")
    ax_mem.bar([i + width / 2 for i in x], [gb(s.memory.torch_peak_allocated_bytes if s.memory else 0)
                                            for s in report.sides], width, label="torch peak allocated")
    for i, s in enumerate(report.sides):
        if s.status != STATUS_OK:
            ax_mem.annotate(f"{s.status.upper()} (peak before failing)", (i + width / 2, 0), ha="center", va="bottom",
                            fontsize=8, rotation=90)
    ax_mem.set_xticks(list(x), names)
    ax_mem.set_ylabel("GB")
    ax_mem.set_title("Memory")
    ax_mem.legend()
    tps = [s.timing.decode_tokens_per_s or 0 if s.timing else 0 for s in report.sides]
    bars = ax_tps.bar(list(x), tps, color="tab:green")
    for bar, s in zip(bars, report.sides):
        if s.status != STATUS_OK:
            ax_tps.annotate(s.status.upper(), (bar.get_x() + bar.get_width() / 2, 0), ha="center", va="bottom")
    ax_tps.set_xticks(list(x), names)
    ax_tps.set_ylabel("decode tokens/s")
    ax_tps.set_title("Throughput")
    fig.suptitle(f"{report.model}: batch {report.batch}, ctx {report.ctx} ({report.environment.get('device_name', '')})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
