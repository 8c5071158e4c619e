"""Exceptions shared by the model engine modules."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model bundle could not be resolved or loaded.

    A dedicated type lets the services tell "the weights are unusable" (fail the readiness
    probe, exit) apart from bugs or bad requests, and always carries a message that says
    what to fix.
    """
