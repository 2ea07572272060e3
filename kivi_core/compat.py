"""The few places where transformers 5.x versions differ, in one file.

- The cache keyword: `past_key_values=` up to ~5.2x, `cache=` after (the old name is deprecated).
- Model outputs: `.past_key_values` vs `.cache`.
"""

from __future__ import annotations

import inspect


def cache_kwarg(model) -> str:
    """The keyword under which `model.forward` / `model.generate` take a cache."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(outputs):
    """The cache object returned in a model output, whatever this version calls it."""
    cache = getattr(outputs, "cache", None)
    return cache if cache is not None else getattr(outputs, "past_key_values", None)
