"""policies layer (see docs/ARCHITECTURE.md)."""
