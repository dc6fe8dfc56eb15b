"""The LIBRA remote-hash function: safe fetch -> in-memory decode -> hashes.

Stateless by design: image bytes live only in memory for the duration of one analysis and are
never written to disk, logged or returned. Only ``protocol`` is imported from the rest of LIBRA.
"""
