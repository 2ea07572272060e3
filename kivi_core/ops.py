"""Backend dispatch for the KIVI hot ops: the pure-torch reference or the Triton kernels.

Each op has a torch twin (`*_ref`, in kivi_core) and a Triton version (`*_triton`, in kivi_kernels) with
the same signature; this module only chooses between them.
"""

from __future__ import annotations

import contextlib
import os

import torch

from .attention_ref import decode_attention_ref
from .quant import quantize_keys_ref, quantize_values_ref
from .state import KiviState

# The fused kernel handles a few query tokens (decode, speculative decoding); longer chunks (a new chat
# turn) go through dequantize-then-SDPA once.
MAX_KERNEL_QUERY = 8


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(backend: str, device: torch.device) -> bool:
    """Whether `backend` ("auto" | "torch" | "triton") runs the Triton kernels for tensors on `device`."""
    if backend == "torch":
        return False
    if backend == "triton":
        if device.type != "cuda" and not _interpret():
            raise ValueError(
                f"backend='triton' needs a CUDA device (tensors are on {device}); set TRITON_INTERPRET=1 to run "
                "the kernels on CPU, or use backend='auto'."
            )
        return True
    return device.type == "cuda" and _triton_importable()


def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:  # pragma: no cover - triton missing or broken: fall back to torch
        return False
    return True


def _on(device: torch.device):
    """Triton launches on the *current* CUDA device: pin it to the tensors' one, so a model split over
    GPUs (device_map) runs each layer's kernels where that layer's cache lives."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def quantize_keys(k, bits, group_size, valid, out, backend):
    """Quantize keys per channel into `out = (codes, scale, min)` views of the cache's storage."""
    if use_triton(backend, k.device):
        from kivi_kernels.quant_pack import quantize_keys_triton

        with _on(k.device):
            return quantize_keys_triton(k, bits, group_size, valid, out=out)
    codes, scale, mn = quantize_keys_ref(k, bits, group_size, valid)
    out[0].copy_(codes)
    out[1].copy_(scale)
    out[2].copy_(mn)


def quantize_values(v, bits, group_size, out, backend):
    """Quantize values per token into `out = (codes, scale, min)` views of the cache's storage."""
    if use_triton(backend, v.device):
        from kivi_kernels.quant_pack import quantize_values_triton

        with _on(v.device):
            return quantize_values_triton(v, bits, group_size, out=out)
    codes, scale, mn = quantize_values_ref(v, bits, group_size)
    out[0].copy_(codes)
    out[1].copy_(scale)
    out[2].copy_(mn)


def decode_attention(query: torch.Tensor, state: KiviState, valid, scaling: float, backend: str) -> torch.Tensor:
    """Fused attention over packed storage: [B, Hq, q, D] -> [B, q, Hq, D]."""
    if use_triton(backend, query.device):
        from kivi_kernels.decode_attention import decode_attention_triton

        with _on(query.device):
            return decode_attention_triton(query, state, valid, scaling)
    return decode_attention_ref(query, state, valid, scaling)
