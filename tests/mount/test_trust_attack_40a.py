"""Attack round 40a: the fixes of round 39 (c0b5a7a..d366947), attacked by variants.

Work in progress.
"""
