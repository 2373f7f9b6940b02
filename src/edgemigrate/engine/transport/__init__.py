"""Transport: mutual-TLS asyncio streams (:mod:`.streams`) and the testbed PKI (:mod:`.tls`)."""
