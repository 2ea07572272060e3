"""The cache settings an evaluation compares in one run: full precision, KIVI, and the paper's ablations."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from .ablations import SimulatedKiviCache
from .config import KiviConfig
from .memory import CacheBytes

# kind -> how the cache is built
KINDS = ("fp", "kivi", "per-token-keys", "simulated")
ABLATIONS = ("per-token-keys", "no-window")
# Opt-in options beyond the paper (KiviConfig.sink_tokens / rotate_keys), compared at the lowest bits.
OPTIONS = ("sinks", "rotate", "sinks+rotate")
SINKS = 4


@dataclass(frozen=True, slots=True)
class Setting:
    """One side of a comparison.

    kind: "fp" (transformers' DynamicCache, full precision), "kivi" (KiviCache), "per-token-keys" (keys
    and values both quantized per token, simulated: see kivi_core.ablations), "simulated" (KIVI by
    quantize-then-dequantize, an independent check of KiviCache).
    """

    kind: str
    config: KiviConfig | None = None
    key_window: str = "flush"  # per-token-keys only: "flush" (R at a time, as KIVI's keys) or "sliding"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"setting kind {self.kind!r} is not one of {KINDS}.")
        if (self.kind == "fp") != (self.config is None):
            raise ValueError("a full-precision setting has no KiviConfig; every other setting needs one.")

    @property
    def name(self) -> str:
        if self.config is None:
            return "full precision"
        c = self.config
        base = c.label()
        if self.kind == "per-token-keys":
            return base + " keys per-token" + (" (sliding)" if self.key_window == "sliding" else "")
        if self.kind == "simulated":
            return base + " (simulated)"
        return base

    def as_dict(self) -> dict:
        c = self.config
        return {
            "name": self.name,
            "kind": self.kind,
            "k_bits": c.k_bits if c else None,
            "v_bits": c.v_bits if c else None,
            "group_size": c.group_size if c else None,
            "residual_length": c.residual_length if c else None,
            "key_axis": "token" if self.kind == "per-token-keys" else ("channel" if c else None),
        }

    def make_cache(self, model=None):
        """A fresh, empty cache for one batch (pass it as the model's cache keyword)."""
        if self.kind == "fp":
            return DynamicCache()
        if self.kind == "kivi":
            from .cache import KiviCache

            return KiviCache(self.config, model_config=getattr(model, "config", None))
        if self.kind == "per-token-keys":
            return SimulatedKiviCache(self.config, key_axis="token", key_window=self.key_window)
        return SimulatedKiviCache(self.config)


def cache_bytes(cache) -> CacheBytes | None:
    """Bytes held by a cache: KiviCache reports its own; a DynamicCache counts its tensors; simulated: None."""
    mem = getattr(cache, "memory", None)
    if callable(mem):
        return mem()
    total = 0
    for layer in getattr(cache, "layers", []):
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return CacheBytes(residual=total)


def standard_settings(
    bits: tuple[int, ...] = (2, 4),
    group_sizes: tuple[int, ...] = (32,),
    residual_lengths: tuple[int, ...] = (128,),
    ablations: tuple[str, ...] = (),
    backend: str = "auto",
    options: tuple[str, ...] = (),
) -> list[Setting]:
    """Full precision, then KIVI k{b}v{b} for each bits x G x R, then the ablations (at the lowest bits,
    first G and R): "per-token-keys" (keys per token too) and "no-window" (R = 0).

    bits may contain 16 (= the full-precision baseline, always included anyway). options: "sinks"
    (4 full-precision sink tokens), "rotate" (Hadamard-rotated keys), "sinks+rotate", at the lowest bits.
    """
    for a in ablations:
        if a not in ABLATIONS:
            raise ValueError(f"ablation {a!r} is not one of {', '.join(ABLATIONS)}.")
    for opt in options:
        if opt not in OPTIONS:
            raise ValueError(f"option {opt!r} is not one of {', '.join(OPTIONS)}.")
    kbits = [b for b in bits if b != 16]
    settings = [Setting("fp")]
    for b in kbits:
        for g in group_sizes:
            for r in residual_lengths:
                settings.append(Setting("kivi", KiviConfig(k_bits=b, v_bits=b, group_size=g, residual_length=r, backend=backend)))
    b, g, r = (min(kbits) if kbits else 2), group_sizes[0], residual_lengths[0]
    for opt in options:
        settings.append(Setting("kivi", KiviConfig(
            k_bits=b, v_bits=b, group_size=g, residual_length=r, backend=backend,
            sink_tokens=SINKS if "sinks" in opt else 0, rotate_keys="rotate" in opt,
        )))
    if ablations:
        b = min(kbits) if kbits else 2
        g, r = group_sizes[0], residual_lengths[0]
        if "per-token-keys" in ablations:
            settings.append(Setting("per-token-keys", KiviConfig(k_bits=b, v_bits=b, group_size=g, residual_length=r, backend=backend)))
        if "no-window" in ablations and r != 0:
            settings.append(Setting("kivi", KiviConfig(k_bits=b, v_bits=b, group_size=g, residual_length=0, backend=backend)))
    return settings
