"""PSI-cardinality relay (issue 15): the coordinator stores and forwards two nodes' signed,
opaque openmined-psi messages (protocol/psi.py); it never sees a hash value."""
