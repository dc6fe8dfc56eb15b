"""Differential privacy for the viewer tier (issue 15): ``[viewer] privacy = "dp"``.

mechanism.py adds calibrated discrete Laplace noise with OpenDP; accountant.py spends and
stores releases against a privacy budget per data window; release.py turns the exact picture
into the noisy viewer picture; models.py holds the accountant's tables.
"""
