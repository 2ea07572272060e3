"""kivi's attention function: lets a stock transformers model read the packed KIVI cache directly.

transformers (v5) resolves `ALL_ATTENTION_FUNCTIONS[config._attn_implementation]` at every forward. At
import, kivi wraps the "sdpa" and flash-attention entries with a dispatcher that leaves every call alone
unless its key tensor was returned by a `KiviLayer.update` (it carries a `_kivi_layer` tag). Those calls
go to `KiviLayer`'s own attention: the fused kernel over packed storage on the Triton backend, or the
dequantized states through the original function on the torch backend. No model class is copied or
patched, and models without a KIVI cache run the original functions untouched.

Models whose attention does not go through the interface (transformers' Falcon calls its own SDPA on
what `cache.update` returns; any model with attn_implementation="eager") never hand a tagged tensor to
the dispatcher: their layers fall back to dequantized states, with a one-time notice (see KiviLayer).
"""

from __future__ import annotations

import functools

import torch
from transformers.modeling_utils import AttentionInterface

from . import ops
from .phases import PhasedKiviLayer
from .quant import rotate

# Implementations whose signature (module, query, key, value, attention_mask, **kwargs) and mask formats
# (None, a 2D padding mask, or a 4D bool/additive mask) the dispatcher understands.
WRAPPED = ("sdpa", "flash_attention_2", "flash_attention_3", "flash_attention_4")


def valid_from_mask(mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """Key validity [B, length] (False = padding) from whatever mask the model passes, or None."""
    if mask is None or not isinstance(mask, torch.Tensor):
        return None
    if mask.dim() == 4:
        row = mask[:, 0, -1, :]  # the last query sees every key that is not padding
    elif mask.dim() == 2:
        row = mask
    else:
        return None
    if row.shape[-1] < length:
        return None
    row = row[:, :length]
    if row.dtype == torch.bool:
        return row
    if row.is_floating_point():  # additive mask: 0 where allowed, a large negative number where masked
        return row > torch.finfo(row.dtype).min / 2
    return row != 0


def _fused_ok(query: torch.Tensor, attention_mask, kwargs: dict) -> bool:
    """Whether the fused kernel computes exactly what the original function would."""
    if query.shape[2] > ops.MAX_KERNEL_QUERY:
        return False
    if kwargs.get("dropout", 0.0) or kwargs.get("softcap") is not None or kwargs.get("output_attentions"):
        return False
    if kwargs.get("position_bias") is not None or kwargs.get("s_aux") is not None:
        return False
    # With several query tokens the kernel applies causal + padding; other masks (sliding windows)
    # need the model's full mask.
    if query.shape[2] > 1 and kwargs.get("sliding_window") is not None:
        return False
    return True


def attend(layer, original, module, query, key, value, attention_mask, **kwargs):
    """Attention for a query whose keys live in `layer` (called by the dispatcher)."""
    if getattr(layer, "is_static_decode", False):  # the lean engine's static caches (kivi_core.static)
        scaling = kwargs.get("scaling")
        if scaling is None:
            scaling = getattr(module, "scaling", query.shape[-1] ** -0.5)
        return layer.attend(query, scaling), None
    if isinstance(layer, PhasedKiviLayer):  # rows grouped by padding phase: each part attends here
        return layer.attend(attend, original, module, query, key, value, attention_mask, **kwargs)
    # a KiviLayer (one padding phase of a PhasedKiviLayer, which handled the prompt step itself)
    valid = valid_from_mask(attention_mask, layer.length)
    if valid is None:
        valid = layer._context_valid()
    if (
        ops.use_triton(layer.config.backend, query.device)
        and _fused_ok(query, attention_mask, kwargs)
        and not layer.config.sink_tokens  # sinks are not read by the kernel: dequantize path
    ):
        scaling = kwargs.get("scaling")
        if scaling is None:
            scaling = getattr(module, "scaling", query.shape[-1] ** -0.5)
        if layer._rot is not None:  # keys are stored rotated: rotate the query, not the cache
            query = rotate(query, layer._rot)
        out = (ops.decode_attention(query, layer.state(), valid, scaling, layer.config.backend), None)
    else:
        k, v = layer.materialize()
        out = original(module, query, k, v, attention_mask, **kwargs)
    layer.settle(valid)
    return out


def _dispatcher(original):
    @functools.wraps(original)
    def kivi_dispatch(module, query, key, value, attention_mask, *args, **kwargs):
        layer = getattr(key, "_kivi_layer", None)
        if layer is None:
            return original(module, query, key, value, attention_mask, *args, **kwargs)
        del key._kivi_layer  # one claim per update
        return attend(layer, original, module, query, key, value, attention_mask, *args, **kwargs)

    kivi_dispatch._kivi_original = original
    return kivi_dispatch


def install() -> None:
    """Wrap the interface's entries once (idempotent)."""
    mapping = AttentionInterface._global_mapping
    for name in WRAPPED:
        fn = mapping.get(name)
        if fn is not None and not hasattr(fn, "_kivi_original"):
            AttentionInterface.register(name, _dispatcher(fn))
