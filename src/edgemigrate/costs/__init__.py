"""costs layer (see docs/ARCHITECTURE.md)."""
