"""Bolt Card reader station: the NTAG 424 core, reader backends, the tap daemon, card tools."""
