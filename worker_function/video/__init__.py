"""Video hashing in the function (issue 13): sniffing, limits, vPDQ frame hashing, isolation.

Kept light: importing the package loads no decoder (PyAV is imported by ``decode`` only), so the
image path and the CLI's start-up do not pay for FFmpeg.
"""
