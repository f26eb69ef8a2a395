"""One tap, from a card in the field to a decision and a durable record.

:mod:`~station.tap.pipeline` decides (read, verify, policy, record, the after-accept hook);
:mod:`~station.tap.result` is what it returns; :mod:`~station.tap.verifier` turns a SUN URL
into a verified (uid, counter); :mod:`~station.tap.status` caches the tracker's card status.
"""
