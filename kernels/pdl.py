"""Programmatic dependent launch (PDL, sm_90+) between the launches of one attention call.

A call is two or three launches: the splits (v1, v3 or the GQA kernel; the GQA tensor-core bulk can put its
window's splits on a launch of their own) and the merge. Launched plainly, each waits for the one before to
finish, flush its memory and retire, then pays its own launch and prologue: a graph-node gap on the call's
critical path per launch. With PDL a launch may start once every program of the one before has started
(`pdl_trigger`, the first thing each of our programs does) and waits with `pdl_wait` where it needs that
launch's results: the merge at its top, the window's splits (which need nothing from the bulk) at their end,
so the merge waiting on them also waits on the bulk. Its programs sit in the SM slots the earlier launch's
last wave frees, and their launch overlaps its tail. A call's first launch, itself a dependent of whatever ran
before (`PDL_FIRST`), waits before it triggers: the window's splits load the query and the cache with no wait
before, so they must not start before the kernels that wrote those are done.

Host side: `pdl_launch(device)` says whether a launch may use it (CUDA, compute capability 9.0+, not the
interpreter, `PDL` on) and `launch_kw` gives the launch keyword. `griddepcontrol` is a no-op in a grid not
launched with the attribute, and a trigger with no dependent launch does nothing.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

# on for every multi-launch call where the GPU has it; off: each launch waits for the last (benchmarks compare)
PDL = True
# the call's first launch as a dependent of whatever ran before it (it then waits at its top, before its first
# load): off by default, a variant in the benchmarks
PDL_FIRST = True

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def _has_pdl(device_index: int) -> bool:
    return torch.cuda.get_device_capability(device_index)[0] >= 9


def pdl_launch(device: torch.device) -> bool:
    """Whether launches on `device` may use PDL: CUDA at compute capability 9.0+, compiled (not
    TRITON_INTERPRET=1), and the module's `PDL` on."""
    return PDL and not _INTERPRET and device.type == "cuda" and _has_pdl(device.index or 0)


def launch_kw(on: bool) -> dict:
    """The launch keyword for a dependent launch (`on`), else none (the interpreter takes no such keyword)."""
    return {"launch_pdl": True} if on else {}


@triton.jit
def pdl_trigger(ON: tl.constexpr):
    # this program has started: once all of the grid's have, the next launch (if launched with PDL) may place its
    # programs in the slots ours free
    if ON:
        gdc_launch_dependents()


@triton.jit
def pdl_wait(ON: tl.constexpr):
    # until the launch before this one (if this one was launched with PDL) has finished and its stores are visible
    if ON:
        gdc_wait()
