"""Abuse contacts of hosters: the operator table first, then RDAP (cached)."""
