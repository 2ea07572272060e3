"""One transformer layer's KIVI cache: all the KIVI logic lives here; `KiviCache` only builds and delegates.

The scheme, exactly (Liu et al., ICML 2024, "KIVI", Algorithm 1 and the reference code):
- Keys are quantized per channel: for each (sequence, kv head, channel), groups of G consecutive tokens.
  Values are quantized per token: groups of G consecutive channels. Asymmetric min-max, k_bits / v_bits
  each 2 or 4, scale and min in the model dtype (see kivi_core.quant).
- Full-precision residual R. Prefill of L tokens: keys - the first L - L % R tokens are quantized and the
  last L % R wait in a full-precision tail; values - the first L - R are quantized, the last R kept.
- Decode: a new key joins the tail; when the tail holds R tokens all R are quantized at once and the tail
  empties. Values are a sliding window of exactly R full-precision tokens: the oldest leaves the window
  quantized, one token per step.
- Attention at each step sees the step's own tokens, the key tail and the value window in full
  precision: a step first appends, attention runs, and only then is the layer *settled* (flush, slide).
  This is the order of the reference code (quantize after the attention of the step that filled the tail).
- R = 0 (the paper's "no window" ablation): attention sees nothing in full precision. Each step
  quantizes its values (per token) and flushes whole key groups before attention; keys still need G
  tokens to form a per-channel group, so the incomplete group is kept in full precision for later but
  shown to attention quantized with its current range. Measured on SmolLM2 (decode-mode PPL, issue 5's
  protocol) this reproduces the published ablation anchor; keeping the step's own tokens in full
  precision instead gives 22.1 vs the anchor's 27.8.

Deviations from the paper, on purpose:
- Left padding: padded positions take no part in a key group's min/max (the reference code let them
  widen the range, KIVI issue #46); a group made only of padding stores scale 0, min 0.
- Scale and min are rounded to the model dtype before the codes are computed, so the stored pair is
  exactly the one dequantization uses.
- Key groups and flushes count from the start of the stored sequence. `KiviCache` stores a left-padded
  batch as one KiviLayer per padding phase (kivi_core.phases), so each row's groups are those it has
  alone.
- Opt-in, beyond the paper (KiviConfig): `sink_tokens` keeps each row's first S real tokens in full
  precision (`sink_k/sink_v`, used on the dequantize path) and out of their key group's range;
  `rotate_keys` stores keys Hadamard-rotated (tail included), so attention rotates the query instead.

Storage (bytes really held, see `memory()`): packed key/value stores grow along the token axis in fixed
blocks (`STORE_BLOCK` tokens, never doubling), the key tail in `TAIL_BLOCK` steps and is released when a
flush empties it, the value window keeps R + `WINDOW_SLACK` slots and is compacted in place. So a decode
step appends by index; nothing copies the whole cache.
"""

from __future__ import annotations

import math

import torch
from transformers.cache_utils import CacheLayerMixin

from . import ops
from .config import KiviConfig
from .memory import CacheBytes
from .quant import codes_per_word, fake_quantize_partial_keys, hadamard, rotate
from .state import KiviState

# Growth quanta, in tokens. At ctx 4096 (Llama-2-7B shape, k2v2 G=32 R=128) the worst-case slack is
# 63 packed tokens per store (1.5%), 15 tail tokens (0.9%) and 16 window slots (1%): 3.4% over the live data.
STORE_BLOCK = 64
TAIL_BLOCK = 16
# Compacting the window moves R tokens once per WINDOW_SLACK steps: 8 token copies a step at R=128.
WINDOW_SLACK = 16


def _round_up(n: int, block: int) -> int:
    return -(-n // block) * block


def _grown(buf: torch.Tensor, used: int, need: int, block: int, dim: int) -> torch.Tensor:
    """`buf` if it holds `need` slots along `dim`, else a larger buffer (multiple of `block`) with the
    first `used` slots copied over."""
    if buf.shape[dim] >= need:
        return buf
    shape = list(buf.shape)
    shape[dim] = _round_up(need, block)
    new = buf.new_empty(shape)
    if used:
        new.narrow(dim, 0, used).copy_(buf.narrow(dim, 0, used))
    return new


class KiviLayerBase(CacheLayerMixin):
    """What every KIVI cache layer answers the same way to transformers: a growing layer of `length`
    positions that cannot be cropped or offloaded."""

    is_sliding = False
    is_compileable = False
    is_croppable = False
    length: int = 0

    def get_mask_sizes(self, query_length, *args) -> tuple[int, int]:
        # transformers >= 5.2x passes the query length, earlier 5.x the cache_position tensor.
        q = query_length if isinstance(query_length, int) else int(query_length.shape[0])
        return self.length + q, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return -1

    def get_max_cache_shape(self) -> int:  # transformers 5.17 name
        return -1

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError(
            "KiviCache cannot be cropped: quantized key groups span many tokens and cannot be cut back "
            "exactly. Use a DynamicCache for assisted/speculative generation that rolls tokens back."
        )

    def offload(self):
        raise NotImplementedError("KiviCache does not support offloading; it is already ~5x smaller than fp16.")

    def prefetch(self):
        return None


class KiviLayer(KiviLayerBase):
    """KIVI storage and rules of one attention layer (see the module docstring for the exact scheme).
    A step is `update` (append) -> attention over `state()` / `materialize()` -> `settle()`."""

    def __init__(self, config: KiviConfig, context=None):
        super().__init__()
        self.config = config
        # Shared with the other layers of one KiviCache: the padding mask of the current forward, the
        # one-time notices. None when the layer is used alone.
        self.context = context
        self.length = 0
        # True while k_tail / v_win are the caller's prompt tensors (never written to; re-homed on settle).
        self._borrowed = False
        self.capacity = 0  # positions of packed storage to allocate at once (KiviCache(capacity=...))

    # ------------------------------------------------------------------ storage
    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        cfg = self.config
        B, H, _, D = key_states.shape
        cfg.check_head_dim(D)
        if value_states.shape[-1] != D:
            raise ValueError(
                f"KIVI needs keys and values of the same head_dim, got {D} and {value_states.shape[-1]}."
            )
        self.device, self.dtype = key_states.device, key_states.dtype
        if self.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise ValueError(f"KIVI cache supports float16, bfloat16 and float32 states, got {self.dtype}.")
        G = cfg.group_size
        ck, cv = codes_per_word(cfg.k_bits), codes_per_word(cfg.v_bits)
        empty = dict(device=self.device)
        cap = _round_up(self.capacity, math.lcm(STORE_BLOCK, cfg.key_flush, ck))
        self.k_codes = torch.empty(B, H, cap // ck, D, dtype=torch.int32, **empty)  # [B, H, tokens/ck, D]
        self.k_scale = torch.empty(B, H, cap // G, D, dtype=self.dtype, **empty)  # [B, H, tokens/G, D]
        self.k_min = torch.empty_like(self.k_scale)
        self.v_codes = torch.empty(B, H, cap, D // cv, dtype=torch.int32, **empty)  # [B, H, tokens, D/cv]
        self.v_scale = torch.empty(B, H, cap, D // G, dtype=self.dtype, **empty)  # [B, H, tokens, D/G]
        self.v_min = torch.empty_like(self.v_scale)
        self.k_tail = torch.empty(B, H, 0, D, dtype=self.dtype, **empty)  # full-precision keys [n_kq, L)
        self.v_win = torch.empty(B, H, 0, D, dtype=self.dtype, **empty)  # full-precision values [n_vq, L)
        self.w0 = 0  # first used slot of v_win
        # Attention sinks (config.sink_tokens): full-precision copies of each row's first S real tokens.
        self.sink_k = torch.empty(B, H, 0, D, dtype=self.dtype, **empty)  # rotated like all stored keys
        self.sink_v = torch.empty(B, H, 0, D, dtype=self.dtype, **empty)
        self.sink_pos = torch.empty(B, 0, dtype=torch.long, **empty)  # [B, S] positions
        self._sink_max = -1  # largest sink position (host int, read once at capture)
        self._rot = hadamard(D, self.device) if cfg.rotate_keys else None
        self.n_kq = 0
        self.n_vq = 0
        self.batch, self.heads, self.head_dim = B, H, D
        # The key store grows in whole flushes, the packed words never straddle a growth step.
        self._k_block = math.lcm(STORE_BLOCK, cfg.key_flush, ck)
        self.is_initialized = True

    @property
    def n_kt(self) -> int:
        return self.length - self.n_kq

    @property
    def n_vw(self) -> int:
        return self.length - self.n_vq

    def state(self) -> KiviState:
        """Views of the storage for attention (valid until the next update)."""
        cfg = self.config
        tail = self.k_tail[:, :, : self.n_kt]
        if cfg.residual_length == 0 and self.n_kt:
            # No window: even the incomplete key group is seen quantized (a small temporary, < G tokens).
            valid = self._context_valid()
            if valid is not None:
                valid = valid[:, self.n_kq : self.length]
            tail = fake_quantize_partial_keys(tail, cfg.k_bits, valid)
        return KiviState(
            self.k_codes, self.k_scale, self.k_min, self.n_kq, tail,
            self.v_codes, self.v_scale, self.v_min, self.n_vq, self.v_win[:, :, self.w0 : self.w0 + self.n_vw],
            cfg.k_bits, cfg.v_bits, cfg.group_size,
        )

    def _append(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        if self._rot is not None:  # keys are stored rotated: the tail too, so one rotated query fits all
            key_states = rotate(key_states, self._rot)
        q = key_states.shape[2]
        if self.n_kt == 0 and self.n_vw == 0 and q > TAIL_BLOCK:
            # A prompt into an empty tail: keep references, settle quantizes straight from them and
            # copies only the remainder (no full-precision copy of the whole prompt).
            self.k_tail, self.v_win, self.w0 = key_states, value_states, 0
            self._borrowed = True
            self.length += q
            return
        kt = self.n_kt
        self.k_tail = _grown(self.k_tail, kt, kt + q, TAIL_BLOCK, 2)
        self.k_tail[:, :, kt : kt + q].copy_(key_states)
        vw = self.n_vw
        if self.w0 + vw + q > self.v_win.shape[2]:
            if vw + q <= self.v_win.shape[2]:  # compact: slide the window back to slot 0
                if vw:
                    self.v_win[:, :, :vw] = self.v_win[:, :, self.w0 : self.w0 + vw].clone()
            else:
                new = self.v_win.new_empty(
                    self.batch, self.heads, _round_up(vw + q, TAIL_BLOCK) + WINDOW_SLACK, self.head_dim
                )
                if vw:
                    new[:, :, :vw].copy_(self.v_win[:, :, self.w0 : self.w0 + vw])
                self.v_win = new
            self.w0 = 0
        self.v_win[:, :, self.w0 + vw : self.w0 + vw + q].copy_(value_states)
        self.length += q

    def settle(self, valid: torch.Tensor | None = None) -> None:
        """Flush the key tail in whole blocks of R (G when R=0) and slide the value window down to R.

        valid: [B, L'] bool with L' >= this layer's length, False at padded positions (or None).
        """
        cfg = self.config
        G, F, R = cfg.group_size, cfg.key_flush, cfg.residual_length
        backend = cfg.backend
        if cfg.sink_tokens and self.n_kq == 0 and self.n_vq == 0 and self.sink_pos.shape[1] == 0:
            self._capture_sinks(valid)
        # Keys: whole flush blocks of the tail go to the packed store.
        nf = (self.n_kt // F) * F
        if nf:
            a, b = self.n_kq, self.n_kq + nf
            ck = codes_per_word(cfg.k_bits)
            self.k_codes = _grown(self.k_codes, a // ck, b // ck, self._k_block // ck, 2)
            self.k_scale = _grown(self.k_scale, a // G, b // G, self._k_block // G, 2)
            self.k_min = _grown(self.k_min, a // G, b // G, self._k_block // G, 2)
            kvalid = None if valid is None else valid[:, a:b]
            if a <= self._sink_max:  # sinks stay full precision and do not widen their group's range
                kvalid = self._exclude_sinks(kvalid, a, b)
            out = (self.k_codes[:, :, a // ck : b // ck], self.k_scale[:, :, a // G : b // G], self.k_min[:, :, a // G : b // G])
            ops.quantize_keys(self.k_tail[:, :, :nf], cfg.k_bits, G, kvalid, out, backend)
            self.n_kq = b
            self._rehome_tail(nf)
        elif self._borrowed:
            self._rehome_tail(0)
        # Values: everything older than the newest R tokens leaves the window quantized.
        excess = self.n_vw - R
        if excess > 0:
            a, b = self.n_vq, self.n_vq + excess
            self.v_codes = _grown(self.v_codes, a, b, STORE_BLOCK, 2)
            self.v_scale = _grown(self.v_scale, a, b, STORE_BLOCK, 2)
            self.v_min = _grown(self.v_min, a, b, STORE_BLOCK, 2)
            out = (self.v_codes[:, :, a:b], self.v_scale[:, :, a:b], self.v_min[:, :, a:b])
            ops.quantize_values(self.v_win[:, :, self.w0 : self.w0 + excess], cfg.v_bits, G, out, backend)
            self.n_vq = b
            self.w0 += excess
        if self._borrowed or self.v_win.shape[2] > R + 2 * WINDOW_SLACK + TAIL_BLOCK:
            # Own the window (never write into the caller's prompt tensor) and, after a long prompt,
            # keep R + slack slots rather than the prompt's length.
            vw = self.n_vw
            win = self.v_win.new_empty(self.batch, self.heads, _round_up(vw, TAIL_BLOCK) + WINDOW_SLACK, self.head_dim)
            if vw:
                win[:, :, :vw].copy_(self.v_win[:, :, self.w0 : self.w0 + vw])
            self.v_win, self.w0 = win, 0
        self._borrowed = False

    def _capture_sinks(self, valid: torch.Tensor | None) -> None:
        """Keep full-precision copies of each row's first S real tokens (from the first settled chunk)."""
        L = self.length
        S = min(self.config.sink_tokens, L)
        real = torch.ones(self.batch, L, dtype=torch.bool, device=self.device) if valid is None else valid[:, :L]
        order = torch.arange(L, device=self.device)
        # first S real positions of each row (padding sorts last)
        pos = torch.argsort(torch.where(real, order, order + L), dim=1)[:, :S]  # [B, S]
        idx = pos[:, None, :, None].expand(self.batch, self.heads, S, self.head_dim)
        self.sink_k = self.k_tail[:, :, :L].gather(2, idx).clone()
        self.sink_v = self.v_win[:, :, self.w0 : self.w0 + L].gather(2, idx).clone()
        self.sink_pos = pos
        self._sink_max = int(pos.max()) if S else -1  # one host read, at the prompt

    def _exclude_sinks(self, kvalid: torch.Tensor | None, a: int, b: int) -> torch.Tensor:
        n = b - a
        out = torch.ones(self.batch, n + 1, dtype=torch.bool, device=self.device)  # last column: a dump
        if kvalid is not None:
            out[:, :n] = kvalid
        inside = (self.sink_pos >= a) & (self.sink_pos < b)
        cols = torch.where(inside, self.sink_pos - a, n)  # sinks outside [a, b) write into the dump
        out.scatter_(1, cols, False)
        return out[:, :n]

    def _rehome_tail(self, start: int) -> None:
        """Move the unflushed keys [start, start + n_kt) of k_tail into a right-sized buffer of our own."""
        rem = self.n_kt
        tail = self.k_tail.new_empty(self.batch, self.heads, _round_up(rem, TAIL_BLOCK), self.head_dim)
        if rem:
            tail[:, :, :rem].copy_(self.k_tail[:, :, start : start + rem])
        self.k_tail = tail  # zero slots when a flush emptied it: no memory held between flushes

    # ------------------------------------------------------------------ the transformers protocol
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Append the step's tokens (storage only) and return them.

        The caller drives the step: append (here), attention over `state()` (the fused kernel) or
        `materialize()` (dequantized states), then `settle()`. Inside a KiviCache that caller is the
        padding-phase layer (kivi_core.phases), which also speaks transformers' protocol.
        """
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self._append(key_states, value_states)
        if self.config.residual_length == 0:
            # R = 0 (the paper's no-window ablation): attention sees only quantized states, the step's
            # own tokens included, so the step settles before attention, not after.
            self.settle(self._context_valid())
        return key_states, value_states

    def materialize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All keys and values as new dense tensors in the model dtype (the unfused path)."""
        from .attention_ref import dequantize_state

        keys, values = dequantize_state(self.state(), self.dtype)
        if self.sink_pos.shape[1]:
            idx = self.sink_pos[:, None, :, None].expand(-1, self.heads, -1, self.head_dim)
            keys.scatter_(2, idx, self.sink_k)
            values.scatter_(2, idx, self.sink_v)
        if self._rot is not None:
            keys = rotate(keys, self._rot)  # H is its own inverse
        return keys, values

    def _context_valid(self) -> torch.Tensor | None:
        return None if self.context is None else self.context.valid

    # ------------------------------------------------------------------ whole-cache operations
    _STORAGE = ("k_codes", "k_scale", "k_min", "k_tail", "v_codes", "v_scale", "v_min", "v_win", "sink_k", "sink_v", "sink_pos")

    def _map_batch(self, fn) -> None:
        if not self.is_initialized:
            return
        for name in self._STORAGE:
            setattr(self, name, fn(getattr(self, name)))
        self.batch = self.k_tail.shape[0]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: every stored part follows its beam (packed bytes are reordered, not requantized)."""
        self._map_batch(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map_batch(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map_batch(lambda t: t[indices.to(t.device) if isinstance(indices, torch.Tensor) else indices])

    def reset(self) -> None:
        self.is_initialized = False
        self.length = 0
        self._borrowed = False
        for name in self._STORAGE:
            if hasattr(self, name):
                delattr(self, name)

    # ------------------------------------------------------------------ accounting
    def memory(self) -> CacheBytes:
        """Bytes really held by this layer's tensors (capacity included), by component."""
        if not self.is_initialized:
            return CacheBytes()

        def nb(t: torch.Tensor) -> int:
            return t.numel() * t.element_size()

        return CacheBytes(
            codes=nb(self.k_codes) + nb(self.v_codes),
            scales=nb(self.k_scale) + nb(self.k_min) + nb(self.v_scale) + nb(self.v_min),
            residual=nb(self.k_tail) + nb(self.v_win) + nb(self.sink_k) + nb(self.sink_v) + nb(self.sink_pos),
        )
