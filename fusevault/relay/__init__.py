"""The relay service for send/receive (seed 002)."""
