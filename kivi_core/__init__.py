"""kivi: a KIVI (2/4-bit, keys per channel, values per token) KV cache for stock transformers v5."""

from . import attention as _attention
from .cache import KiviCache
from .compat import cache_kwarg, output_cache
from .config import KiviConfig
from .engine import LeanResult, lean_generate
from .layer import KiviLayer
from .memory import CacheBytes, analytic_cache_bytes
from .prepare import prepare
from .quant import (
    dequantize_keys_ref,
    dequantize_values_ref,
    pack,
    quantize_keys_ref,
    quantize_values_ref,
    unpack,
)
from .state import KiviState

__version__ = "0.1.0"

# Safe to do at import: the dispatcher diverts only calls whose key tensor comes from a KiviLayer.
_attention.install()

__all__ = [
    "CacheBytes",
    "KiviCache",
    "KiviConfig",
    "KiviLayer",
    "KiviState",
    "LeanResult",
    "analytic_cache_bytes",
    "cache_kwarg",
    "dequantize_keys_ref",
    "dequantize_values_ref",
    "lean_generate",
    "output_cache",
    "pack",
    "prepare",
    "quantize_keys_ref",
    "quantize_values_ref",
    "unpack",
]
