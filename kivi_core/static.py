"""Static (CUDA-graph capturable) decode caches for the lean engine (`kivi_core.engine`).

A decode step of a normal `KiviCache` passes Python ints (lengths) to its kernels and slices its storage
by them, so a captured CUDA graph would replay the first step's positions forever. The caches here are
built once, after the prompt, for a fixed maximum length, and a step touches them only through device
tensors:

* every buffer is allocated up front for a run of `max_len` positions: the packed stores for the rows
  they can ever hold (keys R * floor(max_len / R), values max_len - R, see `packed_rows`), a key tail of
  R slots, and the value window as a ring of R + 1 slots: position t lives in slot t % (R + 1), so the
  oldest window value is still there while the step's attention runs;
* the layers share `lens = int32 [L, n_kq, n_vq]` on the device (the positions before the step); the
  append / slide kernels (`kivi_kernels.static_step`) and the attention kernels
  (`decode_attention_static`) read it, and one add of a constant delta after the last layer moves it
  on (`end_step`);
* what a step does besides appending is known on the host from the step count alone
  (`DecodeSchedule`): a key flush every R steps, one value leaving the window per step once it holds
  R. So the engine captures one graph per step kind ((flush, slide) = 2 kinds in steady state) and
  picks the replay without asking the GPU.

The KIVI rules are the ones of `kivi_core.layer` (append -> attend -> settle); `StaticKiviCache` is
converted from a prefilled single-phase `KiviCache` and continues it exactly (tests compare greedy tokens
with `model.generate(past_key_values=KiviCache(...))`); or it is allocated for B rows shaped after a
prefilled slice of them, and each slice's `KiviCache` is copied into its rows (`load_rows`), so a large
batch is prefilled a few rows at a time. `StaticFp16Cache` is the fp16 side of the same
loop: dense buffers of `max_len`, SDPA over them with a length mask; `rows(a, b)` lends a slice of rows to
a prefill as views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.cache_utils import Cache

from . import ops
from .cache import KiviCache
from .layer import KiviLayerBase
from .memory import CacheBytes
from .quant import codes_per_word, quantize_values_ref
from .state import KiviState


class DecodeSchedule:
    """Host mirror of the lengths every layer of a static KIVI cache shares, and what the next step does."""

    def __init__(self, length: int, n_kq: int, n_vq: int, residual: int, max_len: int):
        self.length, self.n_kq, self.n_vq = length, n_kq, n_vq
        self.R = residual
        self.max_len = max_len

    def kind(self) -> tuple[bool, bool]:
        """(flush, slide) of the next step: its key fills the tail to R / its value pushes one out."""
        L1 = self.length + 1
        if L1 > self.max_len:
            raise ValueError(f"the static cache holds max_len={self.max_len} positions; step {L1} does not fit "
                             "(build it with a larger max_len)")
        return L1 - self.n_kq == self.R, L1 - self.n_vq > self.R

    def advance(self) -> None:
        flush, slide = self.kind()
        self.length += 1
        self.n_kq += self.R if flush else 0
        self.n_vq += 1 if slide else 0


# Rows of a value store come in blocks of this many (see StaticKiviLayer.__init__). Round 8's decode kernel
# (benchmarks/results/h200_v3_round8.md) read the value scales of exact 3967-row stores with scalar loads.
VALUE_ROW_ALIGN = 16


def packed_rows(max_len: int, R: int) -> tuple[int, int]:
    """(key rows, value rows) the packed stores of a static KIVI layer ever hold over `max_len` positions.

    A step appends position L (L + 1 <= max_len); `DecodeSchedule.kind` decides the rest:
    * keys flush when the step fills the tail to R: block [L + 1 - R, L + 1), so n_kq is always a multiple
      of R (the prompt's settle flushes whole blocks of R too) and at most R * floor(max_len / R); the last
      max_len % R keys stay in the tail. When R divides max_len, the last step's flush fills every row.
    * a value leaves the window when the step makes it hold R + 1: position L - R goes to row L - R, so
      n_vq = max(0, L + 1 - R) after the step, at most max(0, max_len - R) (the window keeps the last R).
    At Llama-2-7B k2v2 G=32 R=128 and max_len 4095 (`kivi profile --ctx 4096`) that is 3968 / 3967 rows
    instead of 4096 for both: 2.7% of a row's cache."""
    return max_len // R * R, max(0, max_len - R)


class _StaticLayer(KiviLayerBase):
    """Built whole (no lazy initialization); `length` counts the step in flight during its attention."""

    is_static_decode = True  # kivi_core.attention routes tagged calls to `attend(query, scaling)`

    def lazy_initialization(self, key_states, value_states) -> None:  # pragma: no cover - built whole
        raise RuntimeError("static cache layers are built whole")

    @property
    def length(self) -> int:  # type: ignore[override]
        return self.schedule.length + (1 if getattr(self, "_in_step", False) else 0)


class StaticKiviLayer(_StaticLayer):
    """One layer of a `StaticKiviCache` (see the module docstring). Decode only: one token a step.

    `lens` (shared by the cache's layers) holds [L, n_kq, n_vq] as before the step; the cache adds the
    step's delta once, after the last layer (`_StaticCache.end_step`)."""

    def __init__(self, src, schedule: DecodeSchedule, max_len: int, lens: torch.Tensor, batch: int | None = None,
                 scratch: dict | None = None):
        """`src`: a settled, prefilled single-phase KiviLayer. `batch` None: continue `src` itself (its
        packed stores are kept when `KiviCache(capacity=...)` made them big enough: no copy). `batch` B:
        allocate stores for B rows (the shapes and dtypes `src`'s would take) and load `src` into rows
        [0, src.batch); `load_rows` fills the others (the row-sliced prefill of `kivi_core.engine`).
        `scratch`: buffers shared by the cache's layers (the flush's quantizer output), by shape."""
        super().__init__()
        cfg = src.config
        self.config, self.schedule, self.max_len, self.lens = cfg, schedule, max_len, lens
        B, H, D = src.batch if batch is None else batch, src.heads, src.head_dim
        dev, dt = src.device, src.dtype
        self.batch, self.heads, self.head_dim, self.device, self.dtype = B, H, D, dev, dt
        G, R = cfg.group_size, cfg.residual_length
        ck = codes_per_word(cfg.k_bits)
        self.R, self.W, self.ck = R, R + 1, ck
        k_rows, v_rows = packed_rows(max_len, R)

        def store(t: torch.Tensor, n: int, rows: int, align: int = 1) -> torch.Tensor:
            # keep the prefill's buffer when it is already big enough (KiviCache(capacity=...)): no copy
            if batch is None and t.shape[2] >= rows:
                return t
            out = t.new_empty(B, H, -(-rows // align) * align, t.shape[3])
            if batch is None:
                out[:, :, :n].copy_(t[:, :, :n])
            return out

        n_kq, n_vq = src.n_kq, src.n_vq
        assert n_kq <= k_rows and n_vq <= v_rows, (n_kq, n_vq, max_len)  # the prompt is shorter than max_len
        self.k_codes = store(src.k_codes, n_kq // ck, k_rows // ck)  # [B, H, tokens/ck, D]
        self.k_scale = store(src.k_scale, n_kq // G, k_rows // G)  # [B, H, tokens/G, D]
        self.k_min = store(src.k_min, n_kq // G, k_rows // G)
        # Value stores get whole blocks of VALUE_ROW_ALIGN rows (3967 -> 3968 at ctx 4096): a head's stride
        # is then a multiple of 16 elements, which Triton specializes on, so the kernels' row loads can be
        # vectors. Keys need none (a head is rows x D words or scales).
        self.v_codes = store(src.v_codes, n_vq, v_rows, VALUE_ROW_ALIGN)  # [B, H, tokens, D/cv]
        self.v_scale = store(src.v_scale, n_vq, v_rows, VALUE_ROW_ALIGN)  # [B, H, tokens, D/G]
        self.v_min = store(src.v_min, n_vq, v_rows, VALUE_ROW_ALIGN)
        self.k_tail = torch.zeros(B, H, R, D, device=dev, dtype=dt)
        self.v_win = torch.zeros(B, H, self.W, D, device=dev, dtype=dt)  # ring: position t in slot t % W
        if batch is None:
            self._load_window(src, 0)
        else:
            self.load_rows(src, 0)
        # a flush's quantizer output, index_copy_'d into place (every R steps). Layers flush one after
        # another, so they share one buffer: one a layer held B x H x 6 KB x 32 layers (Llama-2-7B at
        # k2v2 G=32 R=128), 1.67 GB at batch 265 = 3.6 KIVI rows of the H200's largest batch
        scratch = {} if scratch is None else scratch
        key = ("flush", B, H, D, R // ck, R // G, dt, dev)
        if key not in scratch:
            scratch[key] = (torch.empty(B, H, R // ck, D, device=dev, dtype=torch.int32),
                            torch.empty(B, H, R // G, D, device=dev, dtype=dt),
                            torch.empty(B, H, R // G, D, device=dev, dtype=dt))
        self._kq = scratch[key]
        self._k_rows = torch.arange(R // ck, device=dev)
        self._g_rows = torch.arange(R // G, device=dev)
        self._triton = ops.use_triton(cfg.backend, dev)
        self.is_initialized = True

    def load_rows(self, src, row: int) -> None:
        """Copy a settled, prefilled KiviLayer of the same prompt length into rows [row, row + src.batch)."""
        sch = self.schedule
        # every slice of an unpadded batch has the same prompt length, hence the same flush state
        assert (src.length, src.n_kq, src.n_vq) == (sch.length, sch.n_kq, sch.n_vq), \
            ((src.length, src.n_kq, src.n_vq), (sch.length, sch.n_kq, sch.n_vq))
        assert (src.heads, src.head_dim, src.dtype) == (self.heads, self.head_dim, self.dtype)
        assert 0 <= row and row + src.batch <= self.batch, (row, src.batch, self.batch)
        G, ck = self.config.group_size, self.ck
        n_kq, n_vq = src.n_kq, src.n_vq
        rows = slice(row, row + src.batch)
        for name, n in (("k_codes", n_kq // ck), ("k_scale", n_kq // G), ("k_min", n_kq // G),
                        ("v_codes", n_vq), ("v_scale", n_vq), ("v_min", n_vq)):
            getattr(self, name)[rows, :, :n].copy_(getattr(src, name)[:, :, :n])
        self._load_window(src, row)

    def _load_window(self, src, row: int) -> None:
        """The key tail [n_kq, L) and the value window [n_vq, L) of `src` into rows from `row` on."""
        n_kq, n_vq, L = src.n_kq, src.n_vq, src.length
        rows = slice(row, row + src.batch)
        self.k_tail[rows, :, : L - n_kq].copy_(src.k_tail[:, :, : L - n_kq])
        slots = torch.arange(n_vq, L, device=self.device) % self.W
        self.v_win[rows].index_copy_(2, slots, src.v_win[:, :, src.w0 : src.w0 + (L - n_vq)])

    # ------------------------------------------------------------------ a step
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if key_states.shape[2] != 1:
            raise ValueError(f"the static KIVI cache decodes one token a step; got {key_states.shape[2]} "
                             "(prefill with KiviCache, then convert)")
        if self._triton:
            from kivi_kernels.static_step import static_append

            with ops._on(self.device):
                static_append(key_states, value_states, self.k_tail, self.v_win, self.lens)
        else:
            lens = self.lens.long()
            self.k_tail.index_copy_(2, (lens[0] - lens[1]).view(1), key_states)
            self.v_win.index_copy_(2, (lens[0] % self.W).view(1), value_states)
        self._in_step = True
        key_states._kivi_layer = self
        return key_states, value_states

    def attend(self, query: torch.Tensor, scaling: float) -> torch.Tensor:
        """The step's attention ([B, Hq, 1, D] -> [B, 1, Hq, D]), then the settle of the step."""
        cfg = self.config
        if self._triton:
            from kivi_kernels.decode_attention import decode_attention_static

            st = KiviState(self.k_codes, self.k_scale, self.k_min, 0, self.k_tail, self.v_codes, self.v_scale,
                           self.v_min, 0, self.v_win, cfg.k_bits, cfg.v_bits, cfg.group_size)
            with ops._on(query.device):
                out = decode_attention_static(query, st, self.lens, self.W, self.max_len, scaling)
        else:  # torch path (CPU, eager only): the same state with host lengths, window in order
            out = ops.decode_attention(query, self._host_state(), None, scaling, "torch")
        self._settle()
        return out

    def _host_state(self) -> KiviState:
        sch = self.schedule
        L, n_kq, n_vq = sch.length + 1, sch.n_kq, sch.n_vq
        win = self.v_win.index_select(2, torch.arange(n_vq, L, device=self.device) % self.W)
        cfg = self.config
        return KiviState(self.k_codes, self.k_scale, self.k_min, n_kq, self.k_tail[:, :, : L - n_kq],
                         self.v_codes, self.v_scale, self.v_min, n_vq, win, cfg.k_bits, cfg.v_bits, cfg.group_size)

    def _settle(self) -> None:
        cfg = self.config
        G, backend = cfg.group_size, cfg.backend
        flush, slide = self.schedule.kind()
        if flush:  # every R steps: the full tail -> packed rows n_kq / cpw ...
            n_kq = self.lens[1].long()
            ops.quantize_keys(self.k_tail, cfg.k_bits, G, None, self._kq, backend)
            self.k_codes.index_copy_(2, n_kq // self.ck + self._k_rows, self._kq[0])
            self.k_scale.index_copy_(2, n_kq // G + self._g_rows, self._kq[1])
            self.k_min.index_copy_(2, n_kq // G + self._g_rows, self._kq[2])
        if slide:  # the oldest window value -> packed row n_vq
            if self._triton:
                from kivi_kernels.static_step import static_slide

                with ops._on(self.device):
                    static_slide(self.v_win, self.v_codes, self.v_scale, self.v_min, self.lens, cfg.v_bits, G)
            else:
                n_vq = self.lens[2].long().view(1)
                v = self.v_win.index_select(2, n_vq % self.W)
                c, sc, mn = quantize_values_ref(v, cfg.v_bits, G)
                self.v_codes.index_copy_(2, n_vq, c)
                self.v_scale.index_copy_(2, n_vq, sc)
                self.v_min.index_copy_(2, n_vq, mn)
        self._in_step = False

    def memory(self) -> CacheBytes:
        def nb(*ts):
            return sum(t.numel() * t.element_size() for t in ts)

        return CacheBytes(codes=nb(self.k_codes, self.v_codes),
                          scales=nb(self.k_scale, self.k_min, self.v_scale, self.v_min),
                          residual=nb(self.k_tail, self.v_win))


class StaticFp16Layer(_StaticLayer):
    """The fp16 side of the lean loop: dense [B, H, max_len, D] buffers allocated up front (what
    transformers' StaticCache holds), SDPA under a length mask. A prompt (several tokens) is written at
    host positions and attended by the model's own attention; decode steps go through the shared
    device `lens` (positions before the step, as for KIVI)."""

    def __init__(self, batch: int, heads: int, head_dim: int, schedule: DecodeSchedule, max_len: int,
                 lens: torch.Tensor, device, dtype, buffers: tuple[torch.Tensor, torch.Tensor] | None = None):
        super().__init__()
        self.schedule, self.max_len, self.lens = schedule, max_len, lens
        if buffers is None:
            self.keys = torch.zeros(batch, heads, max_len, head_dim, device=device, dtype=dtype)  # [B, H, max_len, D]
            self.values = torch.zeros_like(self.keys)
        else:  # rows of another layer's buffers (StaticFp16Cache.rows)
            self.keys, self.values = buffers
        self._pos = torch.arange(max_len, device=device)
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        q = key_states.shape[2]
        if q > 1:  # the prompt: host positions, dense prefix views for the model's causal attention
            a = self.schedule.length
            if a + q > self.max_len:
                raise ValueError(f"a prompt of {q} tokens after {a} does not fit max_len={self.max_len}")
            self.keys[:, :, a : a + q].copy_(key_states)
            self.values[:, :, a : a + q].copy_(value_states)
            return self.keys[:, :, : a + q], self.values[:, :, : a + q]
        at = self.lens[:1].long()
        self.keys.index_copy_(2, at, key_states)
        self.values.index_copy_(2, at, value_states)
        self._in_step = True
        key_states._kivi_layer = self
        return key_states, value_states

    def attend(self, query: torch.Tensor, scaling: float) -> torch.Tensor:
        mask = (self._pos <= self.lens[:1].long())[None, None, None, :]  # [1, 1, 1, max_len]: L + 1 positions
        gqa = query.shape[1] != self.keys.shape[1]
        out = F.scaled_dot_product_attention(query, self.keys, self.values, attn_mask=mask, scale=scaling,
                                             enable_gqa=gqa)
        self._in_step = False
        return out.transpose(1, 2)

    def memory(self) -> CacheBytes:
        return CacheBytes(residual=2 * self.keys.numel() * self.keys.element_size())


class _StaticCache(Cache):
    def __init__(self, layers: list, schedule: DecodeSchedule, lens: torch.Tensor):
        super().__init__(layers=layers)
        self.schedule, self.lens = schedule, lens
        R = schedule.R if schedule.R < (1 << 30) else 0
        self._delta = {(f, sl): torch.tensor([1, R if f else 0, 1 if sl else 0], device=lens.device,
                                             dtype=torch.int32) for f in (False, True) for sl in (False, True)}

    def end_step(self) -> None:
        """After the step's forward (all layers): advance the shared device lengths by the step's delta."""
        self.lens.add_(self._delta[self.schedule.kind()])

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.schedule.length

    def memory(self) -> CacheBytes:
        total = CacheBytes()
        for layer in self.layers:
            total = total + layer.memory()
        return total


class StaticKiviCache(_StaticCache):
    """A prefilled `KiviCache` continued as a static, graph-capturable cache of `max_len` positions."""

    @classmethod
    def from_cache(cls, cache: KiviCache, max_len: int, batch: int | None = None) -> "StaticKiviCache":
        """Continue `cache` (its stores are kept, see `StaticKiviLayer`); with `batch` B, allocate stores
        for B rows instead and load `cache` into rows [0, cache's batch): `load_rows` fills the rest."""
        cfg = cache.config
        parts = _settled_parts(cache)
        L = parts[0].length
        if max_len < L + 1:
            raise ValueError(f"max_len={max_len} must exceed the prompt's {L} positions")
        if batch is not None and batch < parts[0].batch:
            raise ValueError(f"batch={batch} is smaller than the prefilled cache's {parts[0].batch} rows")
        schedule = DecodeSchedule(L, parts[0].n_kq, parts[0].n_vq, cfg.residual_length, max_len)
        lens = torch.tensor([L, parts[0].n_kq, parts[0].n_vq], device=parts[0].device, dtype=torch.int32)
        scratch: dict = {}
        layers = [StaticKiviLayer(p, schedule, max_len, lens, batch, scratch) for p in parts]
        out = cls(layers, schedule, lens)
        out.config = cfg
        return out

    def load_rows(self, cache: KiviCache, row: int) -> None:
        """Copy a prefilled `KiviCache` (same config and prompt length) into rows [row, row + its batch)."""
        if cache.config != self.config:
            raise ValueError(f"the prefilled cache's config {cache.config.label()} is not this cache's "
                             f"{self.config.label()}")
        parts = _settled_parts(cache)
        assert len(parts) == len(self.layers), (len(parts), len(self.layers))
        for layer, part in zip(self.layers, parts):
            layer.load_rows(part, row)


def _settled_parts(cache: KiviCache) -> list:
    """The single-phase KiviLayer of each layer of a prefilled `cache`, after the prompt's last settle
    (flush and slide as a decode step would)."""
    why = static_unsupported(cache)
    if why:
        raise ValueError(f"this KiviCache cannot run in the lean engine: {why}")
    parts = [layer.parts[0].layer for layer in cache.layers]
    for p in parts:
        p.settle(None)
    return parts


class StaticFp16Cache(_StaticCache):
    """Dense fp16/bf16 buffers of `max_len` positions for every layer of `model` (prompt, then decode;
    after the prompt's forward call `prompt_done(n)`)."""

    @classmethod
    def for_model(cls, model, batch: int, max_len: int) -> "StaticFp16Cache":
        cfg = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
        heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        p = next(model.parameters())
        schedule = DecodeSchedule(0, 0, 0, 1 << 30, max_len)
        lens = torch.zeros(3, device=p.device, dtype=torch.int32)
        layers = [StaticFp16Layer(batch, heads, head_dim, schedule, max_len, lens, p.device, p.dtype)
                  for _ in range(cfg.num_hidden_layers)]
        return cls(layers, schedule, lens)

    def rows(self, a: int, b: int) -> "StaticFp16Cache":
        """A prompt-only cache over rows [a, b) of these buffers (views: the row-sliced prefill of
        `kivi_core.engine` writes each slice's keys and values straight into place, no copy). It keeps
        its own prompt length: call the batch-wide cache's `prompt_done` once every slice is in."""
        schedule = DecodeSchedule(0, 0, 0, 1 << 30, self.schedule.max_len)
        lens = torch.zeros_like(self.lens)
        layers = [StaticFp16Layer(b - a, layer.keys.shape[1], layer.keys.shape[3], schedule, layer.max_len, lens,
                                  layer.keys.device, layer.keys.dtype, (layer.keys[a:b], layer.values[a:b]))
                  for layer in self.layers]
        return type(self)(layers, schedule, lens)

    def prompt_done(self, length: int) -> None:
        self.schedule.length = length
        self.lens[0] = length


def config_unsupported(cfg) -> str | None:
    """Why a KiviConfig cannot run in the static cache at all (None when it can): known before any prompt."""
    if cfg.residual_length == 0:
        return "residual_length=0 (the no-window ablation settles before attention)"
    if cfg.sink_tokens:
        return "sink_tokens (sinks are read on the dequantize path only)"
    if cfg.rotate_keys:
        return "rotate_keys"
    return None


def static_unsupported(cache: KiviCache) -> str | None:
    """Why a prefilled KiviCache cannot be continued statically (None when it can)."""
    why = config_unsupported(cache.config)
    if why:
        return why
    for layer in cache.layers:
        parts = getattr(layer, "parts", None)
        if parts is None:
            return "a layer is not a KIVI layer (hybrid sliding layers) or holds no prompt yet"
        if len(parts) != 1 or parts[0].rows is not None or parts[0].shift:
            return "the prompt rows are left-padded by different amounts (several padding phases)"
    return None
