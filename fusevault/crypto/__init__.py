"""Pure cryptographic helpers: no I/O, no prompts, no global state but caches."""
