"""Bytes on disk: the vault directory, framing, manifests, padding, crash-safe writes."""
