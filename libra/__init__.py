"""The `libra` command: a thin dispatcher over each component's own sub-commands.

This is the only package that may import several components (DESIGN.md).
"""
