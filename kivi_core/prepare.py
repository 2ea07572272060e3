"""`prepare(model)`: the one call that readies a stock model for KiviCache (optional for most models)."""

from __future__ import annotations

from . import attention
from .cache import KiviCache

_HOOKED = "_kivi_prepared"


def _pre_hook(module, args, kwargs):
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if isinstance(cache, KiviCache):
        cache.bind_model_config(module.config)
        cache.set_padding_mask(kwargs.get("attention_mask"))
    return None


def prepare(model):
    """Install kivi's attention dispatcher and a forward pre-hook on `model` (idempotent; returns model).

    The hook gives a KiviCache two things the cache cannot see by itself: the 2D padding mask (so padded
    positions never widen a key group's range, on every model family) and the model's layer types (so
    sliding-window layers stay ordinary sliding caches). `import kivi_core` already installs the
    dispatcher, so sdpa/flash models need no call at all for the fused path.
    """
    attention.install()
    if not getattr(model, _HOOKED, False):
        model.register_forward_pre_hook(_pre_hook, with_kwargs=True)
        setattr(model, _HOOKED, True)
    return model
