"""Hamming-space indexes for perceptual hash lists (multi-index hashing)."""

from node.matching.index.mih import IndexFormatError, MultiIndex, brute_force

__all__ = ["IndexFormatError", "MultiIndex", "brute_force"]
