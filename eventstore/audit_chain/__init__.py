"""The tamper-evident audit chain: every stored event sealed in position order, with signed
checkpoints, and the verification that recomputes both from the stored records."""
