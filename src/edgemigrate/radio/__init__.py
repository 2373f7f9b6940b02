"""radio layer (see docs/ARCHITECTURE.md)."""
