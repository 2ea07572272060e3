"""Which decode loop runs (`--loop auto|lean|generate`), and the lean loop's runs as `decode.Generation`s.

The lean loop (`kivi_core.engine.lean_generate`: static cache, one CUDA graph per step kind) applies when
decoding is greedy, the prompts decoded together have one token length (its static attention reads no
padding mask), and `kivi_core.engine.lean_unsupported` finds nothing against the KIVI setting or the model
(R = 0, sinks, rotated keys; attention outside transformers' AttentionInterface; a sliding window that
binds). `lean` forces it and refuses, with one line saying why and what to use instead, whatever it cannot
run; `generate` is the plain per-step loop (`kivi_cli.decode`); `auto` takes lean where it applies on
CUDA, where CUDA graphs are its gain (7B, batch 1, H200: 6.5 vs ~56 ms a step), and the plain loop
elsewhere. On CPU the lean loop runs the same steps eagerly: that is how the tests check its tokens.

`generate` decides per batch: under auto a batch of prompts of different lengths takes the plain loop
(prompts are not regrouped by length, so records keep input order and batch composition); under lean
every batch is checked before any runs. `profile` decides once for all its sides (its prompts are random
and unpadded).
"""

from __future__ import annotations

from typing import Optional

import torch

from kivi_cli.decode import Generation
from kivi_cli.errors import UsageError
from kivi_cli.metrics import Timing
from kivi_cli.options import Loop, _flag_names

AUTO_NOTE = "use --loop auto or --loop generate."


def settings_blocker(kivi, temperature: float = 0.0) -> Optional[str]:
    """Why no run with these flags can take the lean loop (None: the model and prompts decide)."""
    from kivi_core.static import config_unsupported

    if temperature > 0:
        return f"--temperature {temperature:g} (the lean loop decodes greedily)"
    why = config_unsupported(kivi) if kivi is not None else None
    return None if why is None else _flag_names(why)


def model_blocker(loaded, kivi, positions: int) -> Optional[str]:
    """Why the lean loop cannot run this model for rows of up to `positions` positions (None: it can)."""
    from kivi_core.engine import lean_unsupported

    why = lean_unsupported(loaded.model, kivi, positions)
    return None if why is None else f"{loaded.name}: {why}"


def check_settings(loop: Loop, kivi, temperature: float = 0.0) -> None:
    """Before loading the model: `--loop lean` with flags it can never run is a usage error."""
    if loop is Loop.lean and (why := settings_blocker(kivi, temperature)):
        raise UsageError(f"--loop lean cannot run {why}; {AUTO_NOTE}")


def padding_blocker(attention_mask: torch.Tensor) -> Optional[str]:
    """Why a batch's prompts cannot share the lean loop: they differ in length (left padding)."""
    if bool(attention_mask.all()):
        return None
    lengths = sorted(set(int(n) for n in attention_mask.sum(1).tolist()))
    return f"prompts of {', '.join(map(str, lengths))} tokens in one batch (the lean loop takes unpadded prompts)"


def batch_loop(loop: Loop, loaded, kivi, temperature: float, attention_mask: torch.Tensor,
               max_new_tokens: int) -> str:
    """"lean" or "generate" for one batch of `generate` (`attention_mask` [B, T] from left padding).
    Under lean the batches were checked by `check_batches` before any ran."""
    if loop is Loop.generate or (loop is Loop.auto and loaded.device.type != "cuda"):
        return "generate"
    why = (settings_blocker(kivi, temperature) or padding_blocker(attention_mask)
           or model_blocker(loaded, kivi, attention_mask.shape[1] + max_new_tokens - 1))
    if why and loop is Loop.lean:  # not reached after check_batches; kept so the rule has one home
        raise UsageError(f"--loop lean cannot run {why}; {AUTO_NOTE}")
    return "generate" if why else "lean"


def check_batches(loaded, kivi, batches: list[tuple[str, torch.Tensor]], max_new_tokens: int) -> None:
    """`--loop lean`, before any batch runs: each (label, attention_mask) must be unpadded and fit the
    model (a sliding window binds by length), or one usage error names the first that does not."""
    for label, mask in batches:
        if why := padding_blocker(mask):
            raise UsageError(f"--loop lean cannot run {label}: {why}; use --batch-size 1, --loop auto "
                             "(padded batches take the plain loop) or --loop generate.")
        if why := model_blocker(loaded, kivi, mask.shape[1] + max_new_tokens - 1):
            raise UsageError(f"--loop lean cannot run {why}; {AUTO_NOTE}")


def profile_loop(loop: Loop, loaded, kivis: list, positions: int) -> str:
    """"lean" or "generate" for every side of a profile (rows of `positions` positions, unpadded)."""
    if loop is Loop.generate or (loop is Loop.auto and loaded.device.type != "cuda"):
        return "generate"
    why = next((w for k in kivis if (w := settings_blocker(k) or model_blocker(loaded, k, positions))), None)
    if why and loop is Loop.lean:
        raise UsageError(f"--loop lean cannot run {why}; {AUTO_NOTE}")
    return "generate" if why else "lean"


def run_lean(loaded, kivi, input_ids: torch.Tensor, max_new_tokens: int, eos_ids) -> tuple[Generation, object]:
    """Greedy decoding of unpadded `input_ids` [B, T] through the lean loop, stopping once every row has
    an eos: (the `Generation` the plain loop would give, with the same tokens up to each row's length;
    the static cache, for its bytes)."""
    from kivi_core.engine import lean_generate

    res = lean_generate(loaded.model, input_ids.to(loaded.device), max_new_tokens, kivi, eos_ids=eos_ids)
    # batch_loop checked what lean_generate would otherwise hand to plain `model.generate`
    assert res.cache is not None, f"the lean loop fell back to {res.graphs}"
    steps = res.tokens.shape[1] - 1
    # wall time of every decode step (on CUDA the first of each kind runs eagerly and is captured at its
    # second occurrence), as the plain loop counts it; GPU ms a step from the first graph replay on
    timing = Timing(batch=input_ids.shape[0], prefill_s=res.prefill_s, decode_steps=steps, decode_wall_s=res.decode_s,
                    gpu_ms_per_step=res.steady_ms_per_step)
    return Generation(res.tokens, res.lengths, timing), res.cache
