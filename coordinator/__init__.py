"""The federation coordinator: node registry, verified ingest of signed reports, global picture.

It imports ``protocol`` only; nodes reach it over HTTP (POST /v1/reports).
"""
