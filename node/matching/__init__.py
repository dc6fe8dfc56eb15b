"""Matching on the node: the hash-list index (multi-index hashing, persisted
and encrypted) and the matcher that finds the best list entry for an image's hashes."""
