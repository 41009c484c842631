"""Profile likelihoods: MINOS intervals, profile curves and 2-D contours, every ray searched at once."""

from ._api import Intervals, contour, intervals, profile, threshold

__all__ = ["Intervals", "intervals", "profile", "contour", "threshold"]
