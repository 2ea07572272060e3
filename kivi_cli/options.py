"""Shared command-line options, declared once and reused by every command.

Each alias is an `Annotated[type, typer.Option(...)]`; a command lists the ones it takes as parameters.
Flags that configure KIVI echo mlx-lm's names where the meaning matches (`--kv-bits` is `--bits` here
because keys and values can differ: `--k-bits/--v-bits`; `--kv-group-size` is `--group-size`).
`kivi_settings()` maps the flags onto the library's one config object, `KiviConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from kivi_cli.errors import UsageError

MODEL_PANEL = "Model"
KIVI_PANEL = "KIVI cache"
OUTPUT_PANEL = "Output"
SAMPLING_PANEL = "Sampling"

BIT_CHOICES = (2, 4, 16)


class Arch(str, Enum):
    """Built-in architecture presets (random weights); numbers in `kivi_cli.models.PRESETS`."""

    tiny = "tiny"
    llama_2_7b = "llama-2-7b"
    llama_2_13b = "llama-2-13b"
    llama_2_70b = "llama-2-70b"
    llama_3_1_8b = "llama-3.1-8b"
    mistral_7b = "mistral-7b"


class Dtype(str, Enum):
    auto = "auto"
    float16 = "float16"
    bfloat16 = "bfloat16"
    float32 = "float32"


class Loop(str, Enum):
    """`--loop` of generate and profile (LOOP_HELP; `kivi_cli.loops` decides where lean applies)."""

    auto = "auto"
    lean = "lean"
    generate = "generate"


class Backend(str, Enum):
    auto = "auto"
    torch = "torch"
    triton = "triton"


def _check_bits(value: Optional[int]) -> Optional[int]:
    if value is not None and value not in BIT_CHOICES:
        raise typer.BadParameter(f"{value} is not one of 2, 4, 16 (16 = full-precision baseline).")
    return value


def _check_kv_bits(value: Optional[int]) -> Optional[int]:
    if value is not None and value not in (2, 4):
        raise typer.BadParameter(f"{value} is not one of 2, 4.")
    return value


# --- model --------------------------------------------------------------------------------------------
ModelArg = Annotated[
    Optional[str],
    typer.Argument(
        help="Hugging Face hub id or local folder. Default: the offline demo model (SmolLM2-135M-Instruct).",
        show_default=False,
    ),
]
ArchOpt = Annotated[
    Optional[Arch],
    typer.Option(
        "--arch",
        help="Build a model with random weights from a preset of published numbers instead of loading one "
        "(speed and memory do not depend on weights). `tiny` runs in seconds on CPU.",
        rich_help_panel=MODEL_PANEL,
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option("--device", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N.", rich_help_panel=MODEL_PANEL),
]
DtypeOpt = Annotated[
    Dtype,
    typer.Option("--dtype", help="Model and cache dtype. auto: float16 on CUDA, float32 on CPU.", rich_help_panel=MODEL_PANEL),
]
TrustRemoteCodeOpt = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code",
        help="Allow the model folder's own Python code to run. Off unless you pass it.",
        rich_help_panel=MODEL_PANEL,
    ),
]

# --- KIVI ---------------------------------------------------------------------------------------------
BitsOpt = Annotated[
    int,
    typer.Option(
        "--bits",
        help="KV cache bits for keys and values: 2, 4, or 16 (full-precision baseline, no KIVI).",
        callback=_check_bits,
        rich_help_panel=KIVI_PANEL,
    ),
]
BitsListOpt = Annotated[
    str,
    typer.Option(
        "--bits",
        help="Comma-separated KIVI settings to compare against the full-precision baseline, e.g. 2,4.",
        rich_help_panel=KIVI_PANEL,
    ),
]
KBitsOpt = Annotated[
    Optional[int],
    typer.Option("--k-bits", help="Key bits (2 or 4); overrides --bits for keys.", callback=_check_kv_bits,
                 rich_help_panel=KIVI_PANEL, show_default=False),
]
VBitsOpt = Annotated[
    Optional[int],
    typer.Option("--v-bits", help="Value bits (2 or 4); overrides --bits for values.", callback=_check_kv_bits,
                 rich_help_panel=KIVI_PANEL, show_default=False),
]
GroupSizeOpt = Annotated[
    int,
    typer.Option("--group-size", "-G", help="Quantization group size G (paper: 32). A multiple of 16 dividing R and head_dim.",
                 rich_help_panel=KIVI_PANEL),
]
ResidualLengthOpt = Annotated[
    int,
    typer.Option("--residual-length", "-R", help="Recent tokens kept in full precision R (paper: 128; 0 = no window).",
                 rich_help_panel=KIVI_PANEL),
]
SinkTokensOpt = Annotated[
    int,
    typer.Option("--sink-tokens", min=0, help="Beyond the paper: keep each sequence's first N tokens in full precision "
                 "(attention sinks; dequantize path). 0 = off.", rich_help_panel=KIVI_PANEL),
]
RotateKeysOpt = Annotated[
    bool,
    typer.Option("--rotate-keys", help="Beyond the paper: Hadamard-rotate keys before quantizing them (the query is "
                 "rotated instead; head_dim must be a power of two).", rich_help_panel=KIVI_PANEL),
]
BackendOpt = Annotated[
    Backend,
    typer.Option("--backend", help="auto: Triton kernels on CUDA, pure torch elsewhere.", rich_help_panel=KIVI_PANEL),
]

# --- sampling -----------------------------------------------------------------------------------------
MaxNewTokensOpt = Annotated[
    int, typer.Option("--max-new-tokens", "-n", min=1, help="Tokens to generate per prompt.", rich_help_panel=SAMPLING_PANEL)
]
TemperatureOpt = Annotated[
    float, typer.Option("--temperature", min=0.0, help="0 = greedy.", rich_help_panel=SAMPLING_PANEL)
]
TopPOpt = Annotated[
    float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling mass (with --temperature > 0).",
                        rich_help_panel=SAMPLING_PANEL)
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (sampling, random weights, random prompts).",
                                      rich_help_panel=SAMPLING_PANEL)]

# --- decode loop --------------------------------------------------------------------------------------
# Each command appends what its own runs add (per batch for generate, both sides for profile).
LOOP_HELP = (
    "Decode loop. lean: static cache, one CUDA graph per step kind on CUDA (eager on CPU); greedy, unpadded "
    "prompts, R > 0, no sinks or rotated keys, attention through transformers' AttentionInterface, no "
    "sliding window that binds (else a usage error). generate: the plain per-step loop, any setting. auto: "
    "lean where it applies on CUDA, else generate."
)

# --- output -------------------------------------------------------------------------------------------
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Machine-readable output on stdout (keys documented in docs/cli.md); progress stays on stderr.",
                 rich_help_panel=OUTPUT_PANEL),
]
FileOpt = Annotated[
    Optional[Path],
    typer.Option("--file", "-f", help="Prompts, one per line, or JSONL with a `prompt` field ('-' = stdin).",
                 show_default=False),
]


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """Which model to run and where: what `kivi_cli.models.load` takes."""

    model: Optional[str]
    arch: Optional[str]
    device: str
    dtype: str
    trust_remote_code: bool = False
    seed: int = 0


def model_choice(model: Optional[str], arch: Optional[Arch], device: str, dtype: Dtype,
                 trust_remote_code: bool = False, seed: int = 0) -> ModelChoice:
    if model is not None and arch is not None:
        raise UsageError(f"got both a model ({model!r}) and --arch {arch.value}: pass one of them.")
    return ModelChoice(model, arch.value if arch else None, device, dtype.value, trust_remote_code, seed)


def kivi_settings(bits: int, k_bits: Optional[int], v_bits: Optional[int], group_size: int,
                  residual_length: int, backend: Backend = Backend.auto, sink_tokens: int = 0,
                  rotate_keys: bool = False):
    """Map the KIVI flags onto a `KiviConfig`; None means the full-precision baseline (`--bits 16`)."""
    from kivi_core import KiviConfig

    if bits == 16 and k_bits is None and v_bits is None:
        return None
    default = 2 if bits == 16 else bits
    try:
        return KiviConfig(
            k_bits=k_bits if k_bits is not None else default,
            v_bits=v_bits if v_bits is not None else default,
            group_size=group_size,
            residual_length=residual_length,
            sink_tokens=sink_tokens,
            rotate_keys=rotate_keys,
            backend=backend.value,
        )
    except ValueError as e:  # the config names the bad value and the fix; the flag names are ours
        raise UsageError(_flag_names(str(e))) from None


def parse_bits_list(text: str) -> list[int]:
    """`--bits 2,4` for profile: KIVI settings to compare (16 is the baseline, always run)."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part not in {"2", "4", "16"}:
            raise UsageError(f"--bits {text!r}: {part!r} is not one of 2, 4, 16; use e.g. --bits 2,4.")
        if int(part) != 16 and int(part) not in out:
            out.append(int(part))
    return out


def parse_prefill_batch(text: str) -> Optional[int]:
    """`--prefill-batch auto | N`: rows prefilled together in the lean loop (None = automatic, 0 = all)."""
    value = text.strip().lower()
    if value == "auto":
        return None
    if not value.isdigit():
        raise UsageError(f"--prefill-batch {text!r} is not a number of rows >= 0 or auto; use e.g. "
                         "--prefill-batch 4 (0 = all rows at once).")
    return int(value)


def _flag_names(message: str) -> str:
    for field, flag in (("k_bits", "--k-bits"), ("v_bits", "--v-bits"), ("group_size", "--group-size"),
                        ("residual_length", "--residual-length"), ("backend", "--backend"),
                        ("sink_tokens", "--sink-tokens"), ("rotate_keys", "--rotate-keys")):
        message = message.replace(field, flag)
    return message
