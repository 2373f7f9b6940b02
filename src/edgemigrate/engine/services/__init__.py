"""Stateful services to migrate (see the submodules)."""
