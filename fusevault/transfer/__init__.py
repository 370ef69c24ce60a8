"""Send and receive files through a relay (seed 002)."""

# Here, not in client.py: the command's parser shows it, and client.py imports httpx.
DEFAULT_RELAY = "http://127.0.0.1:4080"
