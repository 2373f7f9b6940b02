"""envs layer (see docs/ARCHITECTURE.md)."""
