"""Peer sync: CouchDB replication of the vault's documents and content records."""
