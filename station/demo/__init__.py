"""Demo peers for the station: TEST PEERS, not real Lightning or issuer services.

They exist so ``make demo`` and the end-to-end tests run the station's real client code against
something that behaves like LNbits (``wallet.py``) and like BTCPay's Bolt Card endpoint and
payouts API (``issuer.py``). Their keys are published test constants: never put real funds or
real cards behind them.
"""
