"""One agency's LIBRA node: crawler, dispatch to the remote-hash function, private hash lists
and matcher, attribution, sightings, signed reports and their outbox.

The node talks to the function and the coordinator over HTTP only; it imports ``protocol`` and
nothing else from LIBRA.
"""
