"""Example applications built on DNA (run from the repository root)."""
