"""Pure NTAG 424 DNA protocol core: bytes in, bytes out.

No reader, no network, no clock and no global randomness live here; anything random is
passed in. Readers, HTTP and the tracker sit around this package and it imports none of them.
"""
