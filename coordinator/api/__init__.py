"""The coordinator's HTTP API routers beyond the core (reports and the picture live in
coordinator.app): members and invitations, removals, displacement flows."""
