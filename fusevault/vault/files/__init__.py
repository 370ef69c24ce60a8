"""The contents of files: sealed blocks, manifests, where records sit."""
