"""Imports: files dropped into a watched host folder taken into the vault, each once."""
