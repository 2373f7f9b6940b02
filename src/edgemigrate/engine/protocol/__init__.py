"""Agent protocol: framed, versioned messages (:mod:`.codec`) and socket-free session machines (:mod:`.session`)."""
