"""The software NTAG 424 DNA: the card side of every conversation, written from the datasheet.

It answers the reader-side core (`station.ntag424`) the way a real chip would, so each side checks
the other. It uses only the core's primitives (`station.ntag424.crypto`), never the reader-side
commands or flows. `bridges/` puts it behind the real pcscd (vpcd) and real nfcpy (udp).
"""
