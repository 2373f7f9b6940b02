"""control layer (see docs/ARCHITECTURE.md)."""
