"""The vault domain: on-disk layout, users, the file tree and file contents."""
