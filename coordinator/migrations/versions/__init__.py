"""Migration scripts, oldest first (a package so they ship with an installed coordinator)."""
