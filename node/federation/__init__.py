"""The node in its federation: enrolment, reports (cells, sketches, coverage),
signing and the outbox that delivers them to the coordinator."""
