"""`kivi profile`: KV memory and decode tokens/s, full precision vs each KIVI setting, in one process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kivi_cli import options as o
from kivi_cli.errors import UsageError
from kivi_cli.output import Output


def profile_cmd(
    model: o.ModelArg = None,
    arch: o.ArchOpt = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Sequences decoded together (start of the search with --find-max-batch).")] = 4,
    ctx: Annotated[int, typer.Option("--ctx", min=2, help="Tokens per sequence in all: a random prompt of ctx - gen tokens, then gen generated.")] = 512,
    gen: Annotated[int, typer.Option("--gen", min=1, help="Tokens generated (decode steps + 1) per sequence.")] = 32,
    bits: o.BitsListOpt = "2",
    k_bits: o.KBitsOpt = None,
    v_bits: o.VBitsOpt = None,
    group_size: o.GroupSizeOpt = 32,
    residual_length: o.ResidualLengthOpt = 128,
    sink_tokens: o.SinkTokensOpt = 0,
    rotate_keys: o.RotateKeysOpt = False,
    backend: o.BackendOpt = o.Backend.auto,
    find_max_batch: Annotated[bool, typer.Option("--find-max-batch", help="Search the largest batch that fits at --ctx for each side and measure there.")] = False,
    safety_margin: Annotated[float, typer.Option("--safety-margin", min=0.0, max=0.5, help="With --find-max-batch: measure at the largest batch that fits times (1 - margin), leaving headroom.")] = 0.05,
    prefill_chunk: Annotated[int, typer.Option("--prefill-chunk", min=0, help="Feed the prompt this many tokens at a time (0 = all at once). Bounds prefill activations, so larger batches fit; with KIVI, later chunks attend to quantized earlier ones.")] = 0,
    prefill_batch: Annotated[str, typer.Option("--prefill-batch", metavar="N|auto", help="Lean loop: prefill this many sequences at a time, each into its rows of the cache (0 = all at once; auto: as many as keep rows x prompt <= 4096 tokens). Same tokens; bounds prefill memory, so the largest batch is set by the cache.")] = "auto",
    loop: Annotated[o.Loop, typer.Option("--loop", help=o.LOOP_HELP + " One loop for every side (fp16 too).")] = o.Loop.lean,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw memory and tokens/s vs full precision to this PNG (needs matplotlib).", show_default=False, rich_help_panel=o.OUTPUT_PANEL)] = None,
    seed: o.SeedOpt = 0,
    device: o.DeviceOpt = "auto",
    dtype: o.DtypeOpt = o.Dtype.auto,
    trust_remote_code: o.TrustRemoteCodeOpt = False,
    json: o.JsonOpt = False,
) -> None:
    """Measure KV memory and decode speed: full precision vs each KIVI setting, same process and loop.

    Per side: analytic and held KV bytes, torch and NVML peak memory, prefill time, decode
    tokens/s, GPU and wall time per decode step, and ratios vs full precision. A side that
    runs out of memory is reported as OOM and the others still run.
    """
    from kivi_cli import models
    from kivi_cli.loops import check_settings, profile_loop
    from kivi_cli.profiling import SideSpec, profile
    from kivi_cli.render import plot_profile, render_profile

    out = Output(json=json)
    if gen >= ctx:
        raise UsageError(f"--gen {gen} must be smaller than --ctx {ctx}: the prompt is ctx - gen tokens.")
    rows = o.parse_prefill_batch(prefill_batch)
    if loop is o.Loop.generate and rows:
        raise UsageError(f"--prefill-batch {rows} needs --loop lean: the plain loop prefills all rows at once.")
    if plot is not None and plot.suffix.lower() != ".png":
        raise UsageError(f"--plot {str(plot)!r}: give a .png file name.")
    specs = [SideSpec("baseline", None)]
    for b in o.parse_bits_list(bits) or ([2] if k_bits or v_bits else []):
        cfg = o.kivi_settings(b, k_bits, v_bits, group_size, residual_length, backend, sink_tokens, rotate_keys)
        if all(s.kivi != cfg for s in specs):
            specs.append(SideSpec(f"kivi-k{cfg.k_bits}v{cfg.v_bits}", cfg))
    for spec in specs:  # before loading: --loop lean with a setting it can never run
        check_settings(loop, spec.kivi)
    loaded = models.load(o.model_choice(model, arch, device, dtype, trust_remote_code, seed), out)
    which = profile_loop(loop, loaded, [s.kivi for s in specs], ctx - 1)  # rows hold ctx - 1 positions
    if which == "generate" and rows:  # --loop auto chose the plain loop
        raise UsageError(f"--prefill-batch {rows} needs --loop lean: the plain loop prefills all rows at once.")
    specs[0] = SideSpec({"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(
        str(loaded.dtype).removeprefix("torch."), "full"), None)
    if loaded.device.type == "cpu":
        out.hint("CPU run: torch/NVML peak rows are n/a; KIVI runs its pure-torch path here.")

    report = profile(loaded, specs, batch, ctx, gen, seed, find_max_batch, out.hint, prefill_chunk, which,
                     safety_margin, rows)
    render_profile(out, report)
    if plot is not None:
        out.hint(f"plot written to {plot_profile(report, plot)}")
