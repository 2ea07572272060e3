"""`KiviCache`: the container transformers' `generate()` talks to. It builds layers and delegates;
all KIVI logic is in `kivi_core.layer.KiviLayer` (one per padding phase, see `kivi_core.phases`)."""

from __future__ import annotations

import functools
import warnings

import torch
from transformers.cache_utils import Cache, DynamicSlidingWindowLayer

from .config import KiviConfig
from .memory import CacheBytes
from .phases import PhasedKiviLayer


class CacheContext:
    """State shared by the layers of one cache: the padding mask of the current forward (set by the
    hook that `kivi_core.prepare` installs) and whether the unfused notice was given."""

    def __init__(self) -> None:
        self.valid: torch.Tensor | None = None
        self.warned_unfused = False
        self.capacity = 0  # positions to allocate packed storage for up front (0: grow as needed)

    def notice_unfused(self) -> None:
        if not self.warned_unfused:
            self.warned_unfused = True
            warnings.warn(
                "kivi: this model's attention does not go through transformers' AttentionInterface with the "
                "cache's tensors (e.g. Falcon, or attn_implementation='eager'), so the fused KIVI path is not "
                "in use: each step attends over dequantized states. Results are correct; memory and speed "
                "are not KIVI's. Load the model with attn_implementation='sdpa' where the family supports it.",
                stacklevel=4,
            )


def _layer_types(model_config) -> list[str] | None:
    text = model_config.get_text_config(decoder=True) if hasattr(model_config, "get_text_config") else model_config
    types = getattr(text, "layer_types", None)
    if types is None:
        n = getattr(text, "num_hidden_layers", None)
        if n is None:
            return None
        window = getattr(text, "sliding_window", None)
        use_sliding = getattr(text, "use_sliding_window", True)
        types = ["sliding_attention" if (window and use_sliding) else "full_attention"] * n
    return list(types)


class KiviCache(Cache):
    """A KIVI KV cache (keys per channel, values per token, recent R tokens in full precision).

    Pass it to an unmodified model: `model.generate(**inputs, past_key_values=KiviCache(KiviConfig()))`.
    Sliding-window layers are never silently wrong. With `model_config` (or after
    `kivi_core.prepare(model)`), the sliding layers of hybrid models (Gemma-3's local layers) are kept as
    ordinary full-precision sliding caches, which already bound their memory. Otherwise (no config, or a
    model whose every layer slides, like Mistral-7B-v0.1) they are KIVI layers that keep every token, and
    the model's sliding-window mask makes their attention exact.
    """

    def __init__(self, config: KiviConfig | None = None, model_config=None, capacity: int = 0):
        self.config = config if config is not None else KiviConfig()
        if not isinstance(self.config, KiviConfig):
            raise TypeError(f"KiviCache takes a KiviConfig, got {type(self.config).__name__}.")
        if capacity < 0:
            raise ValueError(f"capacity={capacity} must be >= 0 (positions to allocate up front; 0 = grow)")
        self.context = CacheContext()
        # With a capacity (the lean engine: prompt + new tokens), a single-phase batch allocates its packed
        # stores once, and kivi_core.static continues them without a copy.
        self.context.capacity = capacity
        layers = self._layers_for(model_config) if model_config is not None else None
        if layers:
            super().__init__(layers=layers)
        else:
            super().__init__(layer_class_to_replicate=functools.partial(PhasedKiviLayer, self.config, self.context))

    def _layers_for(self, model_config) -> list | None:
        types = _layer_types(model_config)
        if types is None:
            return None
        text = model_config.get_text_config(decoder=True) if hasattr(model_config, "get_text_config") else model_config
        # Only hybrid models (Gemma-3: local layers beside global ones) keep their sliding layers as
        # full-precision sliding caches; when every layer slides (Mistral-7B-v0.1's 4096 window) they are
        # all KIVI layers, or KIVI would save nothing there.
        hybrid = "full_attention" in types
        layers = []
        for i, kind in enumerate(types):
            if kind == "full_attention" or (kind == "sliding_attention" and not hybrid):
                layers.append(PhasedKiviLayer(self.config, self.context))
            elif kind == "sliding_attention":
                layers.append(DynamicSlidingWindowLayer(sliding_window=text.sliding_window))
            else:
                raise ValueError(
                    f"KiviCache supports full and sliding attention layers; layer {i} of this model is "
                    f"'{kind}'. Use transformers' DynamicCache for this model."
                )
        return layers

    def bind_model_config(self, model_config) -> None:
        """Build the layers from the model's layer types, if no layer exists yet (called by `prepare`)."""
        if self.layers or self.layer_class_to_replicate is None:
            return
        layers = self._layers_for(model_config)
        if layers:
            self.layers = layers
            self.layer_class_to_replicate = None

    def set_padding_mask(self, attention_mask: torch.Tensor | None) -> None:
        """The 2D attention mask [B, L] of the forward about to run (1 = token, 0 = padding)."""
        if attention_mask is not None and attention_mask.dim() == 2:
            self.context.valid = attention_mask.to(torch.bool)
        else:
            self.context.valid = None

    def kivi_layers(self) -> list[PhasedKiviLayer]:
        return [layer for layer in self.layers if isinstance(layer, PhasedKiviLayer)]

    def memory(self) -> CacheBytes:
        """Bytes really held by every layer's tensors, by component (full-precision sliding layers count
        as residual)."""
        total = CacheBytes()
        for layer in self.layers:
            if isinstance(layer, PhasedKiviLayer):
                total = total + layer.memory()
            elif getattr(layer, "is_initialized", False) and layer.keys is not None:
                total = total + CacheBytes(
                    residual=layer.keys.numel() * layer.keys.element_size()
                    + layer.values.numel() * layer.values.element_size()
                )
        return total

    def crop(self, tokens_to_remove: int) -> None:
        for layer in self.kivi_layers():
            layer.crop(tokens_to_remove)
        super().crop(tokens_to_remove)

    def __repr__(self) -> str:
        return f"KiviCache({self.config.label()}, layers={len(self.layers)}, tokens={self.get_seq_length()})"
