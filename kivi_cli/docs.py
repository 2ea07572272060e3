"""The CLI reference (docs/cli.md), generated from the commands' own `--help`.

`tests/test_cli_docs.py` asserts that docs/cli.md equals `cli_reference_markdown()`, so the reference
cannot drift from the code. Regenerate with:  python -m kivi_cli.docs > docs/cli.md
"""

from __future__ import annotations

from typer.testing import CliRunner

WIDTH = "100"

JSON_KEYS = """\
## `--json` output

Everything below goes to stdout; progress, hints and warnings always go to stderr. Byte counts are
integers, times are seconds unless the key says `ms`, and a value that was not measured is `null`.

**`kivi generate --json`**: one JSON object per prompt (JSON Lines), in input order.

| key | meaning |
|---|---|
| `index` | position of the prompt among all inputs (0-based) |
| `line` | line number in `--file`/stdin (1-based), `null` for prompts given as arguments |
| `prompt`, `text` | the prompt and the generated text (special tokens removed) |
| `prompt_tokens`, `generated_tokens` | token counts (generated includes the final eos, if any) |
| `finish_reason` | `eos` or `length` |
| `kivi` | the cache setting, e.g. `k2v2 G=32 R=128`, or the full-precision dtype |
| `batch_size` | prompts decoded together with this one; the timings and bytes below are that batch's |
| `prefill_s`, `decode_s`, `decode_tokens_per_s` | prefill time, decode wall time, decode tokens/s of the batch |
| `cache_bytes` | bytes the batch's cache really held at the end (the lean loop's static cache is allocated for prompt + `--max-new-tokens` up front) |
| `cache_bytes_full_precision` | what a full-precision cache would hold for the same tokens (analytic) |
| `loop` | the decode loop that ran the batch: `lean` (static cache, CUDA graphs on CUDA) or `generate` (the plain loop) |
| `error` | only on failed lines: `{"index", "line", "error"}`; the exit code is then 1 |

**`kivi profile --json`**: one document: `model`, `device`, `dtype`, `batch`, `ctx`, `prompt_len`,
`gen`, `find_max_batch`, `prefill_chunk`, `prefill_batch` (rows prefilled together: `0` all, `null`
automatic), `loop`, `safety_margin`, `environment` (versions, device name) and `sides`, a list with the
full-precision baseline first. Each side has:

| key | meaning |
|---|---|
| `name` | `fp16` / `bf16` / `fp32` for the baseline, `kivi-k2v2` etc. |
| `kivi` | `null` for the baseline, else `k_bits`, `v_bits`, `group_size`, `residual_length`, `backend` |
| `batch`, `status`, `error` | `status` is `ok`, `oom` (out of memory: reported, not a crash) or `error` |
| `memory.analytic_kv_bytes` | the cache's size by formula at the final length |
| `memory.cache_bytes` (`cache_bytes_by_component`) | bytes the cache's tensors really held (codes, scales, residual) |
| `memory.torch_peak_allocated_bytes` | `torch.cuda.max_memory_allocated` over the run; `null` on CPU |
| `memory.nvml_peak_used_bytes` | device memory in use sampled by NVML in a background thread; `null` on CPU |
| `timing.prefill_s`, `timing.decode_s`, `timing.decode_steps` | prefill time; decode wall time over its steps |
| `timing.decode_tokens_per_s` | `batch * decode_steps / decode_s` |
| `timing.wall_ms_per_step`, `timing.gpu_ms_per_step` | per decode step: wall time, and GPU time from CUDA events around the step (launch gaps included; `null` on CPU) |
| `timing.gpu_busy_ms_per_step` | per decode step: the sum of kernel times (torch profiler, 3 extra steps; `null` on CPU) |
| `max_batch` | with `--find-max-batch`: the largest batch that ran at `ctx` |
| `ratios_vs_baseline` | `*_x_smaller` (baseline / side) for each memory source, `decode_tokens_per_s_x` (side / baseline) |

**`kivi chat --json`**: no streaming; one document at the end: `model`, `kivi`, `events` (in order:
`{"type": "reply", "user", "reply", "new_tokens", "prefill_s", "tokens_per_s", "cached_tokens",
"cache_bytes", "cache_bytes_full_precision", "stopped", "reprefilled"}`, `{"type": "stats", ...}` for
`/stats`, `{"type": "reset"}`) and `final` (the `/stats` numbers at exit).

## Exit codes

`0` success; `1` runtime failure (out of memory, a failed prompt line, a missing optional package);
`2` bad usage (an unknown flag value, a missing prompt, a bad `--group-size`...). Errors are one line on
stderr; set `KIVI_DEBUG=1` to see the traceback.
"""


def _help(args: list[str]) -> str:
    from kivi_cli.main import app

    env = {"COLUMNS": WIDTH, "TERMINAL_WIDTH": WIDTH, "NO_COLOR": "1", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}
    result = CliRunner().invoke(app, [*args, "--help"], env=env, color=False)
    if result.exit_code != 0:
        raise RuntimeError(f"`kivi {' '.join(args)} --help` failed: {result.output}")
    return "\n".join(line.rstrip() for line in result.stdout.strip("\n").splitlines())


def renderer_versions() -> str:
    """The help layout depends on these versions: the exact comparison only holds between equal ones."""
    import importlib.metadata as md

    return f"typer {md.version('typer')}, rich {md.version('rich')}"


def cli_reference_markdown() -> str:
    parts = [
        "# kivi CLI reference",
        "",
        "<!-- Generated by `python -m kivi_cli.docs > docs/cli.md`; tests/test_cli_docs.py keeps it in sync. -->",
        f"<!-- Rendered with {renderer_versions()}. -->",
        "",
        "## `kivi`",
        "",
        "```text",
        _help([]),
        "```",
        "",
    ]
    from kivi_cli.main import app

    for name in [c.name for c in app.registered_commands]:
        parts += [f"## `kivi {name}`", "", "```text", _help([name]), "```", ""]
    parts.append(JSON_KEYS)
    return "\n".join(parts)


if __name__ == "__main__":
    import sys

    sys.stdout.write(cli_reference_markdown())
