"""Real third-party servers the tests run against on loopback (LNbits from PyPI, …)."""
