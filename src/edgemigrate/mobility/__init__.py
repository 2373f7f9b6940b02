"""mobility layer (see docs/ARCHITECTURE.md)."""
