"""medgan: train, compare and evaluate GANs on medical images.

The package reads as a pipeline: ``data`` -> ``models`` -> ``losses`` -> ``train`` -> ``sample``.
"""

__version__ = "0.1.0"


class MedganError(Exception):
    """An error caused by the user's input (data, config, flags): printed without a traceback."""


class MedganWarning(UserWarning):
    """Something is off but the run can go on (e.g. a re-saved dataset file)."""
