"""The names of a user's setting fields in their UserDetails document (seed 000, and fusevault's own).

Apart from vault/model/settings.py (which checks at import that its ``Settings`` has exactly these) so
that key_memory.py, which settings.py imports, can name them too without an import cycle.
"""

KEYS = ("source_dir_to_watch", "target_dir_to_dump", "peer_dir_for_storage", "delete_file_from_source",
        "passphrase_expiry_ttl", "import_into", "settle_seconds")
STAMP = "settings_at_us"  # when these settings were signed (microseconds: JavaScript-exact)
