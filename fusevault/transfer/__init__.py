"""Send and receive files through a relay (seed 002)."""
