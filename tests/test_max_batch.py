"""`kivi profile --find-max-batch`'s search (kivi_cli.max_batch) on a pretend memory, and its wiring in
kivi_cli.profiling.find_max_batch (fake probes, a pretend CUDA device): no GPU, nothing timed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from kivi_cli import profiling
from kivi_cli.max_batch import REFINE_PROBES, SearchResult, predict_largest, search_max_batch
from kivi_cli.metrics import STATUS_OK, STATUS_OOM, Memory

GB = 10**9


class PretendDevice:
    """A pretend device: a run of b rows peaks at weights + b * row (+ a workspace that steps up at
    batch 256, as split counts change) and fits while that plus the allocator's fragmentation stays
    within `usable`. Records every probe."""

    def __init__(self, limit: int, row: int = 457 * 10**6, weights: int = 13 * GB, frag: int = 0):
        self.row, self.weights, self.frag = row, weights, frag
        # usable so that `limit` rows are the most that fit
        self.usable = self.peak(limit) + frag + row // 2
        assert self.fits(limit) and not self.fits(limit + 1)
        self.probed: list[int] = []
        self.peaks: dict[int, int] = {}

    def peak(self, b: int) -> int:
        return self.weights + b * self.row + (3 if b >= 256 else 2) * 10**8

    def fits(self, b: int) -> bool:
        return self.peak(b) + self.frag <= self.usable

    def probe(self, b: int) -> bool:
        self.probed.append(b)
        ok = self.fits(b)
        if ok:
            self.peaks[b] = self.peak(b)
        return ok

    def predict(self):
        return predict_largest(self.peaks, self.usable, self.row)


def truth_probe(limit: int):
    probed = []

    def fits(b: int) -> bool:
        probed.append(b)
        return b <= limit

    return fits, probed


def test_a_right_prediction_costs_two_probes():
    fits, probed = truth_probe(283)
    res = search_max_batch(fits, 62, lambda: 283)
    assert res == SearchResult(283, 284, 6, 283) and res.exact
    assert probed == [62, 124, 248, 496, 283, 284]  # doubling, then the prediction and one row more


# error = prediction - limit: too high or too low by up to 6 rows resolves to one row within the cap
# (limits whose predictions all fall inside the bracket: (62, 124) or (248, 496))
@pytest.mark.parametrize("error", range(-6, 7))
@pytest.mark.parametrize("limit", [283, 70, 255])
def test_a_prediction_off_by_a_few_rows_is_still_exact(limit, error):
    fits, probed = truth_probe(limit)
    res = search_max_batch(fits, 62, lambda: limit + error)
    assert (res.best, res.fails, res.exact) == (limit, limit + 1, True), (probed, res)
    assert len(probed) == len(set(probed)), probed  # no batch probed twice
    bracket = 2 if limit < 124 else 4  # 62 fits, 124 fails / 62 124 248 fit, 496 fails
    # too high is cheaper: the first probe that fits is at the limit or just below it
    assert res.probes - bracket <= {0: 2, 1: 2, -1: 4, -2: 4, 2: 4, 3: 4}.get(error, 6), probed


@pytest.mark.parametrize("predicted", [None, 10_000, 0, -5, 248, 496])
def test_a_useless_prediction_falls_back_to_bisection(predicted):
    # outside the bracket (248, 496) or None: bisection, which the cap stops 4 rows short of exact
    fits, probed = truth_probe(283)
    res = search_max_batch(fits, 62, lambda: predicted)
    assert probed[4:] == [372, 310, 279, 294, 286, 282]
    assert (res.best, res.fails, res.exact) == (282, 286, False)
    res = search_max_batch(truth_probe(283)[0], 62, lambda: predicted, max_probes=100)
    assert (res.best, res.fails, res.exact) == (283, 284, True)


def test_a_prediction_far_off_stops_at_the_cap_and_is_not_exact():
    fits, probed = truth_probe(283)
    res = search_max_batch(fits, 62, lambda: 249)  # 34 rows low: galloping up 1, 2, 4, 8, 16 rows
    assert probed[4:] == [249, 250, 252, 256, 264, 280]
    assert res == SearchResult(280, 496, 4 + REFINE_PROBES, 249) and not res.exact


@pytest.mark.parametrize("limit,start,expect", [
    (0, 4, SearchResult(0, 1, 3)),  # nothing fits: 4, then bisection 2, 1
    (5, 2, SearchResult(5, 6, 5)),  # 2 4 fit, 8 fails, 6 fails, 5 fits
    (19, 2, SearchResult(19, 20, 9)),  # the CLI test's pretend limits: 2 4 8 16 32, 24 20 18 19
    (300, 300, SearchResult(300, 301, 10)),  # starting at the limit: 600 fails, 8 bisection steps
    (10**6, 1000, SearchResult(8192, None, 5)),  # the cap: 1000 2000 4000 8000 8192 all fit
])
def test_search_without_a_predictor(limit, start, expect):
    fits, probed = truth_probe(limit)
    assert search_max_batch(fits, start, cap=8192, max_probes=100) == expect, probed
    assert len(probed) == len(set(probed)) == expect.probes


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_search_refuses_bad_input(bad):
    with pytest.raises(ValueError, match=r"start=.* must be an int >= 1"):
        search_max_batch(lambda b: True, bad)
    with pytest.raises(ValueError, match=r"max_probes=.* must be an int >= 1"):
        search_max_batch(lambda b: True, 1, max_probes=bad)


def test_predict_largest_on_a_line():
    w, r = 13 * GB, 457 * 10**6
    peaks = {124: w + 124 * r, 248: w + 248 * r}
    assert predict_largest(peaks, w + 283 * r + r // 2) == 283
    assert predict_largest(peaks, w + 283 * r) == 283  # exactly at the limit still fits
    assert predict_largest(peaks, w + 283 * r - 1) == 282
    # one batch measured: the cache's bytes a row make the slope
    assert predict_largest({248: w + 248 * r}, w + 283 * r, row_bytes=r) == 283
    # a slope below the cache's bytes a row is noise: every row adds at least its cache
    assert predict_largest(peaks, w + 283 * r, row_bytes=2 * r) == 248 + 35 // 2
    assert predict_largest(peaks, w + 283 * r, row_bytes=r // 2) == 283
    assert predict_largest({}, 100 * GB, r) is None
    assert predict_largest({248: w}, 100 * GB) is None  # no slope


@pytest.mark.parametrize("limit", [63, 279, 287, 300])
@pytest.mark.parametrize("frag", [0, GB])  # the allocator's overhead, which the prediction does not see
def test_search_on_a_pretend_device_is_exact(limit, frag):
    dev = PretendDevice(limit, frag=frag)
    res = search_max_batch(dev.probe, 62, dev.predict)
    assert (res.best, res.fails) == (limit, limit + 1), dev.probed
    bracket = dev.probed.index(next(b for b in dev.probed if not dev.fits(b))) + 1
    # without fragmentation the line is exact (2 probes); 1 GB (~2 rows) errs high by ~2 rows
    assert res.probes - bracket <= (2 if frag == 0 else 4), dev.probed


def test_find_max_batch_predicts_from_the_cuda_peaks(monkeypatch):
    """The wiring: probes are _attempt runs; on CUDA their torch peaks and the free memory feed the
    prediction, which is then checked to one row."""
    dev = PretendDevice(287, frag=GB // 2)
    reserved = dev.weights  # what stays reserved after a probe empties the allocator's cache

    def attempt(loaded, spec, b, prompt_len, gen, seed, measure, **kw):
        assert measure and gen == 2 and prompt_len == 4094
        ok = dev.probe(b)
        mem = Memory(0, cache_bytes=b * dev.row, torch_peak_allocated_bytes=dev.peak(b))
        return (STATUS_OK if ok else STATUS_OOM), None, mem, None

    monkeypatch.setattr(profiling, "_attempt", attempt)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (dev.usable - reserved, 141 * GB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved)
    seen: list[str] = []
    loaded = SimpleNamespace(device=torch.device("cuda"))
    best = profiling.find_max_batch(loaded, profiling.SideSpec("kivi-k2v2", None), 4096, 62, 0, seen.append)
    assert best == 287 and dev.probed[:4] == [62, 124, 248, 496]
    assert dev.probed[4] in (287, 288) and len(dev.probed) <= 4 + 4, dev.probed
    assert any("predicting batch" in s for s in seen), seen
    assert seen[-1].startswith("kivi-k2v2: largest batch 287 (batch 288 does not fit"), seen[-1]

    # the same probes on CPU: no peaks, bisection; the cap leaves it short of exact, and it says so
    dev.probed.clear()
    seen.clear()
    loaded = SimpleNamespace(device=torch.device("cpu"))
    best = profiling.find_max_batch(loaded, profiling.SideSpec("kivi-k2v2", None), 4096, 62, 0, seen.append)
    assert best <= 287 and "not exact" in seen[-1] and not any("predicting" in s for s in seen)
