"""Demo peers for tests and `make demo`: TEST PEERS, never production services."""
