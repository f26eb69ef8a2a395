"""Issuers the tracker follows (BTCPay stores): their Greenfield client and webhooks
(:mod:`tracker.issuers.btcpay`), and the encryption of their secrets at rest
(:mod:`tracker.issuers.secrets`). Nothing here touches the database; the services do."""
