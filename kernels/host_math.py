"""Integer helpers for the launchers' host code: plain Python.

`triton.cdiv` and `triton.next_power_of_2` are ConstexprFunction objects in triton 3.6 and 3.9, so a call
from Python goes through Triton's wrapper: ~1.5 us each on this CI machine (timeit), against ~0.005 us
for the arithmetic. A v1 decode call made ~9 such calls, so ~14 us of its ~50 us of Python host time.
Inside @triton.jit code keep using Triton's own (tl.cdiv, triton.next_power_of_2 on constexprs)."""

from __future__ import annotations


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n, as triton.next_power_of_2 (which gives 0 for 0)."""
    return 0 if n <= 0 else 1 << (n - 1).bit_length()
