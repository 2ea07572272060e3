"""`kivi profile --find-max-batch`'s search: the largest batch that fits, to one row, in few probes.

A probe is a real run on the device (`kivi_cli.profiling.find_max_batch`: prefill and one decode step),
~60 s at batch 280 for Llama-2-7B at ctx 4096 on the H200 (the prompt is prefilled a row at a time), so
the search here is pure logic over `fits(batch) -> bool`, tested on CPU with a pretend memory. Fitting is
taken to be monotone in the batch.

1. Bracket: double from `start` until a batch fails: `lo` fits (0 while none does), `hi` fails.
2. Refine (lo, hi) down to hi = lo + 1: first at the batch `predict()` names (`predict_largest`: a line
   through the peak memory of the batches that fit, up to the memory torch can hold), then galloping
   away from it by 1, 2, 4... rows in the direction it was wrong, then bisecting once the limit is
   bracketed (galloping stops where bisecting is as fast). A right prediction costs 2 probes (it
   fits, one more row does not), as does one a row high; 2-3 rows high or 1-2 low, 4; up to 6 off
   either way, 6; a prediction outside (lo, hi) is ignored: bisection, ~log2(hi - lo). After
   `max_probes` refinement probes the search stops with the largest batch seen to fit, and says it is
   not exact (`SearchResult.exact`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

# Batches above this are not tried (a tiny model on a large GPU would double for a long time).
SEARCH_CAP = 8192
# Refinement probes at most: a prediction off by up to 6 rows is still resolved to one row; bisecting
# without one narrows [248, 496) to 4 rows. A probe near the limit that fits is a full run (~60 s at
# batch 280 on the H200), and the whole profile should stay under ~7 minutes, so no more.
REFINE_PROBES = 6


@dataclass(frozen=True)
class SearchResult:
    best: int  # largest batch seen to fit (0: none)
    fails: Optional[int]  # smallest batch seen to fail; None when `best` reached the cap
    probes: int  # fits() calls, bracketing included
    predicted: Optional[int] = None  # what predict() said (not used when outside the bracket)

    @property
    def exact(self) -> bool:
        """True when best + 1 was seen to fail: `best` is the limit, not a lower bound."""
        return self.fails == self.best + 1


def search_max_batch(fits: Callable[[int], bool], start: int, predict: Optional[Callable[[], Optional[int]]] = None,
                     cap: int = SEARCH_CAP, max_probes: int = REFINE_PROBES) -> SearchResult:
    """The largest batch b <= cap with fits(b) (see the module docstring). `predict` is called once, after
    the bracketing, when the probes so far have told it what it needs; it may return None."""
    for name, value in (("start", start), ("cap", cap), ("max_probes", max_probes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} must be an int >= 1")
    probes = 0

    def probe(b: int) -> bool:
        nonlocal probes
        probes += 1
        return fits(b)

    lo, hi, b = 0, None, min(start, cap)
    while hi is None:
        if probe(b):
            lo = b
            if b >= cap:
                return SearchResult(lo, None, probes)
            b = min(2 * b, cap)
        else:
            hi = b
    predicted = predict() if predict is not None and hi - lo > 1 else None
    # a prediction outside (lo, hi) contradicts a probe already made: bisect instead
    gallop = predicted is not None and lo < predicted < hi
    b, step, first_ok = predicted, 1, None
    for _ in range(max_probes):
        if hi - lo <= 1:
            break
        if not gallop:
            b = (lo + hi) // 2
        ok = probe(b)
        lo, hi = (b, hi) if ok else (lo, b)
        if gallop:
            first_ok = ok if first_ok is None else first_ok
            mid = (lo + hi) // 2
            if ok != first_ok:  # both sides of the prediction seen: the limit is bracketed, bisect
                gallop = False
            else:  # still on the prediction's side: step further away, 1, 2, 4... rows
                b, step = (b + step if ok else b - step), step * 2
                # past the middle of the bracket, bisecting gets there in no more probes
                gallop = b < mid if ok else b > mid
    return SearchResult(lo, hi, probes, predicted)


def predict_largest(peaks: Mapping[int, int], usable: int, row_bytes: Optional[float] = None) -> Optional[int]:
    """The largest batch whose peak memory stays within `usable` bytes, on a line through `peaks`
    (batch -> peak bytes of runs that fit). Slope: between the two largest batches measured (the cache and
    every other allocation that grows with the batch), at least `row_bytes` (the cache's bytes per row,
    which every row adds); `row_bytes` alone when one batch was measured. None without a slope."""
    if not peaks:
        return None
    top = sorted(peaks)[-2:]
    slopes = [row_bytes] if row_bytes else []
    if len(top) == 2 and top[1] > top[0]:
        slopes.append((peaks[top[1]] - peaks[top[0]]) / (top[1] - top[0]))
    slope = max(slopes, default=0)
    if slope <= 0:
        return None
    b = top[-1]
    return b + int((usable - peaks[b]) // slope)
