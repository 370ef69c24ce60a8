"""Capability links (seed 001): publish, fetch and collect through a link store."""
