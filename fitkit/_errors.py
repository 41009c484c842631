"""The error raised for data that cannot be fitted as given (shared by observations and likelihoods)."""

__all__ = ["ObservationError"]


class ObservationError(ValueError):
    """An observation's data, errors or mask are inconsistent or unusable."""
