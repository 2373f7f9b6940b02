"""Checkpoint/restore runtimes: the :class:`~.runtime.Runtime` protocol and the runc + CRIU driver."""
