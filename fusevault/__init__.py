"""fusevault: an end-to-end encrypted drive for Linux, mounted with FUSE."""

__version__ = "0.1.0"
