"""The node's keys: signing and federation key files, signing-key rotation with
the coordinator, and the list key that encrypts hash lists at rest (and its rotation)."""
