"""sim layer (see docs/ARCHITECTURE.md)."""
