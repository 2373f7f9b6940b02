"""experiments layer (see docs/ARCHITECTURE.md)."""
