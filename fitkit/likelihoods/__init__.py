"""Likelihood families: how likely an observation's data are, given its prediction and the params.

Each observation carries one (`Observation(likelihood=...)`); `fk.Problem`'s
`likelihood="normal"|"poisson"` sets the family of those that do not.
"""

from ._base import Data, Likelihood, LikelihoodError
from ._multivariate import MultivariateNormal
from ._normal import Normal
from ._poisson import Poisson
from ._student import StudentT
from ._unbinned import Unbinned

__all__ = [
    "Data",
    "Likelihood",
    "LikelihoodError",
    "MultivariateNormal",
    "Normal",
    "Poisson",
    "StudentT",
    "Unbinned",
    "family",
    "NAMES",
]

NAMES = ("normal", "poisson")


def family(likelihood) -> Likelihood:
    """The family a name stands for (`"normal"`, `"poisson"`), or the family given.

    Raises:
        ValueError: an unknown name.
        TypeError: neither a name nor an `fk.Likelihood`.
    """
    if isinstance(likelihood, Likelihood):
        return likelihood
    if isinstance(likelihood, str):
        if likelihood == "normal":
            return Normal()
        if likelihood == "poisson":
            return Poisson()
        raise ValueError(
            f"unknown likelihood {likelihood!r}; choose one of {NAMES}, or give a family such as "
            "fk.StudentT(nu=4.0), fk.MultivariateNormal(covariance=C) or fk.Unbinned()"
        )
    raise TypeError(
        f"likelihood must be a name {NAMES} or an fk.Likelihood (fk.Normal, fk.StudentT, fk.Poisson, "
        f"fk.MultivariateNormal, fk.Unbinned), got {type(likelihood).__name__}"
    )
