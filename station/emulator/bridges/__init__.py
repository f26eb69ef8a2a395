"""The emulated card behind real reader stacks: pcscd via vpcd, and nfcpy via its udp driver."""
