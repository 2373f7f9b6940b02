"""Adaptive compression on the migration engine's data connection (Zhang et al. 2019).

* :mod:`.netstate` - the network state from ``TCP_INFO`` and goodput (RTT ratio, loss, bandwidth);
* :mod:`.selectors` - the per-chunk codec/level choice: Zhang et al. 2019's RTT x loss rule and a
  model-based selector;
* :mod:`.config` - what the user asked for (:class:`~.config.CompressionConfig`) and the selector it builds;
* :mod:`.sender` - the source's data path of one round: chunk -> parallel compress -> send, with the link
  sampled while writes block; and :func:`~.sender.decode_chunk` for the destination.

The codecs themselves and their frames are in :mod:`edgemigrate.engine.codecs`.
"""
