"""The launchers' plain-Python integer helpers equal Triton's (which cost ~1.5 us a call from Python)."""

import triton

from kivi_kernels.host_math import cdiv, next_power_of_2


def test_host_math_matches_triton():
    for n in range(0, 4200):
        assert next_power_of_2(n) == triton.next_power_of_2(n), n
        for b in (1, 3, 16, 64, 2048):
            assert cdiv(n, b) == triton.cdiv(n, b), (n, b)
