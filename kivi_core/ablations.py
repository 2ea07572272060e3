"""A simulated ("fake-quant") KIVI cache for ablations and as an independent check of `KiviCache`.

`SimulatedKiviCache` applies KIVI's rules with quantize-then-dequantize: every token that KIVI would hold
quantized is replaced, at the moment KIVI would quantize it, by its dequantized value, and kept in a plain
full-precision tensor. Attention then sees exactly the numbers a packed cache would give back, so the
*quality* is the scheme's; the *memory* is not saved (this cache reports no bytes). It is written here
from the rules alone (no code shared with `kivi_core.layer`), so agreement with `KiviCache` on the same
protocol is evidence that both implement KIVI.

Rules (the same as `kivi_core.layer`, see its docstring): a step's own tokens are attended in full
precision (except at R = 0, where attention sees only quantized states); afterwards keys are flushed from a full-precision tail in whole blocks of F = R tokens (G when
R = 0), values leave a sliding window of R one token per step. Quantization is asymmetric min-max per
group of G, scale and min rounded to the model dtype, round half to even, arithmetic in fp32.

Ablation knobs:
- key_axis="token": keys quantized per token (groups of G channels), like values: with values also per
  token this is the paper's failing "K per-token, V per-token" baseline (Table 1).
- key_window="sliding": keys leave a sliding window of R one token per step (as values do) instead of
  being flushed R at a time. Only meaningful with key_axis="token" (a per-channel group needs G tokens).
"""

from __future__ import annotations

import functools

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .config import KiviConfig

KEY_AXES = ("channel", "token")
KEY_WINDOWS = ("flush", "sliding")


def fake_quant(x: torch.Tensor, bits: int, group_size: int, axis: str) -> torch.Tensor:
    """Quantize then dequantize x [B, H, T, D] with asymmetric min-max groups of G along `axis`.

    axis="channel": groups of G consecutive tokens of one channel (T a multiple of G).
    axis="token":   groups of G consecutive channels of one token (D a multiple of G).
    """
    B, H, T, D = x.shape
    G = group_size
    if axis == "channel":
        g = x.float().reshape(B, H, T // G, G, D)  # [B, H, groups, G tokens, D]
        dim = 3
    else:
        g = x.float().reshape(B, H, T, D // G, G)  # [B, H, T, groups, G channels]
        dim = 4
    qmax = (1 << bits) - 1
    mn = g.amin(dim=dim, keepdim=True)
    scale = ((g.amax(dim=dim, keepdim=True) - mn) / qmax).to(x.dtype).float()
    mn = mn.to(x.dtype).float()
    q = torch.where(scale > 0, ((g - mn) / torch.where(scale > 0, scale, 1.0)).round().clamp(0, qmax), 0.0)
    return (q * scale + mn).reshape(B, H, T, D).to(x.dtype)


class SimulatedKiviLayer(DynamicLayer):
    """One layer of `SimulatedKiviCache`: full-precision storage holding dequantized values where KIVI
    would hold codes."""

    def __init__(self, config: KiviConfig, key_axis: str = "channel", key_window: str = "flush"):
        super().__init__()
        if key_axis not in KEY_AXES:
            raise ValueError(f"key_axis={key_axis!r} is not one of {KEY_AXES}.")
        if key_window not in KEY_WINDOWS:
            raise ValueError(f"key_window={key_window!r} is not one of {KEY_WINDOWS}.")
        if key_axis == "channel" and key_window == "sliding":
            raise ValueError("key_window='sliding' needs key_axis='token': a per-channel key group needs G tokens.")
        self.config, self.key_axis, self.key_window = config, key_axis, key_window
        self.n_kq = self.n_vq = 0
        self._pending = False

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.config.check_head_dim(key_states.shape[-1])
        if self._pending:  # the previous step's attention is done: apply its quantization now
            self._settle()
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        if self.config.residual_length == 0:
            # No window: attention sees only quantized states, the step's own included; the incomplete
            # key group is shown quantized as one group of its current tokens.
            self._settle()
            keys, n = self.keys, self.keys.shape[-2] - self.n_kq
            if n and self.key_axis == "channel":
                keys = keys.clone()
                keys[:, :, self.n_kq :] = fake_quant(keys[:, :, self.n_kq :], self.config.k_bits, n, "channel")
            return keys, self.values
        self._pending = True
        return self.keys, self.values

    def _settle(self) -> None:
        cfg = self.config
        G, R, L = cfg.group_size, cfg.residual_length, self.keys.shape[-2]
        if self.key_window == "flush":
            F = cfg.key_flush
            nk = ((L - self.n_kq) // F) * F
        else:
            nk = max(0, L - self.n_kq - R)
        if nk:
            a, b = self.n_kq, self.n_kq + nk
            self.keys[:, :, a:b] = fake_quant(self.keys[:, :, a:b], cfg.k_bits, G, self.key_axis)
            self.n_kq = b
        nv = max(0, L - self.n_vq - R)
        if nv:
            a, b = self.n_vq, self.n_vq + nv
            self.values[:, :, a:b] = fake_quant(self.values[:, :, a:b], cfg.v_bits, G, "token")
            self.n_vq = b

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("SimulatedKiviCache cannot be cropped.")

    def reset(self) -> None:
        super().reset()
        self.n_kq = self.n_vq = 0
        self._pending = False


class SimulatedKiviCache(Cache):
    """KIVI by quantize-then-dequantize, for quality ablations (see the module docstring). Holds full
    precision tensors: `memory()` returns None."""

    def __init__(self, config: KiviConfig, key_axis: str = "channel", key_window: str = "flush"):
        SimulatedKiviLayer(config, key_axis, key_window)  # validate now, not at the first forward
        self.config, self.key_axis, self.key_window = config, key_axis, key_window
        super().__init__(layer_class_to_replicate=functools.partial(SimulatedKiviLayer, config, key_axis, key_window))

    def memory(self):
        return None

    def __repr__(self) -> str:
        return f"SimulatedKiviCache({self.config.label()}, keys per {self.key_axis}, key window {self.key_window})"
