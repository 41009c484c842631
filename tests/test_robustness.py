"""The default calls on badly scaled published problems: right, or flagged; never wrong and valid.

For every case of `fitkit.examples.nls` and both of its starts, a new user's
calls: `res = fk.solve(prob, start)` (default method, no options), then
`fk.covariance(prob, res.params)`. The outcome counts as valid only when
`res.valid` is True and the covariance exists (a `CurvatureError` flags it).
Asserted (issue 11):

- never valid with fewer than 4 correct significant digits;
- valid with at least 6 digits on every run where scipy's
  `least_squares(method="lm", xtol=ftol=gtol=1e-15)` reaches 6 digits
  (`nls.SCIPY_TIGHT_6`, checked in tests/test_nls.py).

All 38 runs take ~30 s on 2 CPU cores (one compilation per problem, shared by
its two starts), so they are in the default suite.
"""

from __future__ import annotations

import functools

import pytest

import fitkit as fk
from fitkit.examples import nls

fk.enable_x64()

RUNS = [(name, start) for name in nls.CASES for start in (0, 1)]
WRONG = 4.0  # fewer correct digits than this is a wrong answer
RIGHT = 6.0  # what the default calls must reach where scipy's tight lm does


@functools.cache
def problem(name: str) -> fk.Problem:
    return nls.CASES[name].build()


def default_calls(name: str, start: int) -> dict:
    """`fk.solve` then `fk.covariance` as the docs show them; the verdict and the digits."""
    return nls.default_calls(nls.CASES[name], problem(name), start)


@pytest.mark.parametrize(("name", "start"), RUNS)
def test_default_solve_is_right_or_flagged(name, start):
    out = default_calls(name, start)
    res = out["result"]
    assert res.valid in (True, False)
    assert isinstance(res.flags, tuple)
    if res.valid:
        assert res.flags == ()
        assert res.edm == res.edm and res.edm >= 0  # a number, not NaN
    else:
        assert res.flags, "a result that is not valid names why"
        assert all(flag in fk.FLAGS for flag in res.flags)
    # the invariant: never a wrong answer marked valid
    assert not (out["valid"] and out["digits"] < WRONG), (
        f"{name} start {start}: valid with {out['digits']:.1f} digits at {out['params']} "
        f"(edm {res.edm:.3g}, {res.message})"
    )
    # as good as scipy's tight Levenberg-Marquardt wherever that reaches 6 digits
    if (name, start) in nls.SCIPY_TIGHT_6:
        assert out["digits"] >= RIGHT and out["valid"], (
            f"{name} start {start}: {out['digits']:.1f} digits, valid={res.valid}, flags={res.flags}, "
            f"covariance {out['curvature']}; {res.message}"
        )
