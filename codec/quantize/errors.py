"""Errors the quantizer raises that callers handle by type."""

from __future__ import annotations


class NonFiniteInputError(ValueError):
    """NaN or Inf reached the quantizer during a training step; the codebooks were left
    unchanged, so a training loop may skip the step and carry on."""
