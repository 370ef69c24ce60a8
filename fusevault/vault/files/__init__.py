"""The contents of files: open files and their versions, rekeying, sealed blocks, where records sit."""
