"""Hamming-space indexes for perceptual hash lists (multi-index hashing)."""

from .mih import IndexFormatError, MultiIndex, brute_force

__all__ = ["IndexFormatError", "MultiIndex", "brute_force"]
