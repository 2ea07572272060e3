"""Left-padded batches, exactly: rows grouped by padding phase, each group one `KiviLayer`.

KIVI groups keys G tokens at a time and flushes them R (F = key_flush) at a time, counted from the start
of the stored sequence. A row left-padded by p tokens, stored at absolute positions, would have its
groups and flushes shifted by p against the same row run alone. Rows whose p has the same phase
phi = p mod F are stored together with their first phi positions dropped: every one of them then starts
its real tokens on a flush boundary, so its groups, flushes and value window are exactly those of the
row run alone (whole groups of padding precede them, and padding never shares a group with real tokens).

With no padding (or one phase and phi = 0) there is a single part covering the batch in order, and every
call passes straight through to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from .config import KiviConfig
from .layer import KiviLayer, KiviLayerBase
from .memory import CacheBytes


class PartContext:
    """What a part's KiviLayer reads as its context: the padding mask of its rows, shifted."""

    def __init__(self) -> None:
        self.valid: torch.Tensor | None = None


@dataclass
class Part:
    rows: torch.Tensor | None  # batch rows of this phase, in order (None: all rows, identity)
    shift: int  # leading positions dropped (all padding for these rows)
    layer: KiviLayer
    context: PartContext


class PhasedKiviLayer(KiviLayerBase):
    """A KIVI layer for a batch whose rows may be left-padded by different amounts (see module doc)."""

    def __init__(self, config: KiviConfig, context=None):
        super().__init__()
        self.config = config
        self.context = context
        self.parts: list[Part] | None = None
        self.length = 0  # positions of the padded batch
        self.fused: bool | None = None
        self._pending = False
        self._prompt: tuple[torch.Tensor, torch.Tensor] | None = None

    def lazy_initialization(self, key_states, value_states) -> None:
        self.config.check_head_dim(key_states.shape[-1])
        self.is_initialized = True

    def __getattr__(self, name):
        # With a single part, read as that part's KiviLayer (n_kq, k_scale, state(), ...).
        parts = self.__dict__.get("parts")
        if parts is not None and len(parts) == 1 and not name.startswith("__"):
            return getattr(parts[0].layer, name)
        raise AttributeError(name)

    # ------------------------------------------------------------------ splitting
    def _context_valid(self) -> torch.Tensor | None:
        return None if self.context is None else self.context.valid

    def _split(self, valid: torch.Tensor | None) -> None:
        """Group rows by padding phase and hand each group its prompt (one host read of the pad counts)."""
        keys, values = self._prompt
        self._prompt = None
        B = keys.shape[0]
        F = self.config.key_flush
        if valid is None:
            phases = [0] * B
        else:
            pads = (valid[:, : self.length].to(torch.int32).cumsum(1) == 0).sum(1)  # leading padding
            phases = (pads % F).tolist()
        groups: dict[int, list[int]] = {}
        for row, phase in enumerate(phases):
            groups.setdefault(phase, []).append(row)
        self.parts = []
        for shift, rows in sorted(groups.items()):
            identity = len(groups) == 1
            idx = None if identity else torch.tensor(rows, device=keys.device)
            ctx = PartContext()
            layer = KiviLayer(self.config, ctx)  # storage and rules; the protocol lives here
            if identity:
                layer.capacity = getattr(self.context, "capacity", 0)
            k = keys if idx is None else keys.index_select(0, idx)
            v = values if idx is None else values.index_select(0, idx)
            part = Part(idx, shift, layer, ctx)
            self._set_part_valid(part, valid)
            layer.update(k[:, :, shift:], v[:, :, shift:])
            self.parts.append(part)

    @staticmethod
    def _rows(t: torch.Tensor | None, part: Part) -> torch.Tensor | None:
        if t is None or part.rows is None:
            return t
        return t.index_select(0, part.rows.to(t.device))

    def _set_part_valid(self, part: Part, valid: torch.Tensor | None) -> None:
        part.context.valid = None if valid is None else self._rows(valid, part)[:, part.shift :]

    def settle(self, valid: torch.Tensor | None = None) -> None:
        self._pending = False
        if self.parts is None:
            self._split(valid)
        for part in self.parts:
            self._set_part_valid(part, valid)
            part.layer.settle(part.context.valid)

    # ------------------------------------------------------------------ the transformers protocol
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self._pending:
            self.settle(self._context_valid())
            if self.fused is None:
                self.fused = False
                if self.context is not None:
                    self.context.notice_unfused()
        q = key_states.shape[2]
        first = self.parts is None
        if first:
            self._prompt = (key_states, value_states)
            self.length = q
            if self.config.residual_length == 0:
                self.settle(self._context_valid())  # no window: even the prompt is attended quantized
                first = False
        else:
            valid = self._context_valid()
            for part in self.parts:
                self._set_part_valid(part, valid)
                part.layer.update(self._rows(key_states, part), self._rows(value_states, part))
            self.length += q
        if self.fused:
            key_states._kivi_layer = self
            return key_states, value_states
        keys, values = (key_states, value_states) if first else self.materialize()
        if self.fused is False:
            self.settle(self._context_valid())
        else:
            keys._kivi_layer = self
            self._pending = True
        return keys, values

    def attend(self, attend_part, original, module, query, key, value, attention_mask, **kwargs):
        """Attention of the padded batch: each part attends over its own storage (see kivi_core.attention)."""
        from .attention import valid_from_mask

        valid = valid_from_mask(attention_mask, self.length)
        if valid is None:
            valid = self._context_valid()
        if self.fused is None:  # first step: key/value are the prompt itself (full precision)
            self.fused = True
            out = original(module, query, key, value, attention_mask, **kwargs)
            self.settle(valid)
            return out
        if len(self.parts) == 1 and self.parts[0].rows is None and self.parts[0].shift == 0:
            part = self.parts[0]
            part.context.valid = valid
            return attend_part(part.layer, original, module, query, None, None, attention_mask, **kwargs)
        out = query.new_empty(query.shape[0], query.shape[2], query.shape[1], query.shape[3])  # [B, q, Hq, D]
        for part in self.parts:
            self._set_part_valid(part, valid)
            mask = self._rows(attention_mask, part)
            if mask is not None:
                mask = mask[..., part.shift :]
            o, _ = attend_part(part.layer, original, module, self._rows(query, part), None, None, mask, **kwargs)
            if part.rows is None:
                out = o
            else:
                out.index_copy_(0, part.rows.to(out.device), o)
        return out, None

    def materialize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All positions of the padded batch as dense tensors (dropped padding positions are zeros)."""
        if len(self.parts) == 1 and self.parts[0].rows is None and self.parts[0].shift == 0:
            return self.parts[0].layer.materialize()
        keys = values = None
        for part in self.parts:
            k, v = part.layer.materialize()
            if keys is None:
                B = sum(k.shape[0] if p.rows is None else p.rows.numel() for p in self.parts)
                keys = k.new_zeros(B, k.shape[1], self.length, k.shape[3])
                values = v.new_zeros(B, v.shape[1], self.length, v.shape[3])
            rows = part.rows if part.rows is not None else torch.arange(k.shape[0], device=k.device)
            keys[rows, :, part.shift :] = k
            values[rows, :, part.shift :] = v
        return keys, values

    # ------------------------------------------------------------------ whole-cache operations
    def _remap(self, source: torch.Tensor) -> None:
        """New row i takes old row source[i] (beams, repeats, selections); parts follow their rows."""
        if self.parts is None:
            if self._prompt is not None:
                self._prompt = tuple(t.index_select(0, source.to(t.device)) for t in self._prompt)
            return
        if len(self.parts) == 1 and self.parts[0].rows is None:
            self.parts[0].layer.reorder_cache(source)
            return
        B_old = sum(p.rows.numel() for p in self.parts)
        owner = torch.empty(B_old, dtype=torch.long)
        index = torch.empty(B_old, dtype=torch.long)
        for c, part in enumerate(self.parts):
            owner[part.rows.cpu()] = c
            index[part.rows.cpu()] = torch.arange(part.rows.numel())
        source = source.cpu()
        kept = []
        for c, part in enumerate(self.parts):
            new_rows = (owner[source] == c).nonzero().flatten()
            if new_rows.numel() == 0:
                continue
            part.layer.reorder_cache(index[source[new_rows]].to(part.rows.device))
            part.rows = new_rows.to(part.rows.device)
            kept.append(part)
        self.parts = kept

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._remap(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        B = self._batch()
        if B:
            self._remap(torch.arange(B).repeat_interleave(repeats))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        B = self._batch()
        if B:
            self._remap(torch.arange(B)[indices])

    def _batch(self) -> int:
        if self.parts is None:
            return 0 if self._prompt is None else self._prompt[0].shape[0]
        return sum(p.layer.batch if p.rows is None else p.rows.numel() for p in self.parts)

    def reset(self) -> None:
        self.parts, self._prompt, self.length, self._pending = None, None, 0, False
        self.is_initialized = False

    def memory(self) -> CacheBytes:
        total = CacheBytes()
        for part in self.parts or []:
            total = total + part.layer.memory()
        return total
