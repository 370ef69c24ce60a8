"""Attack round 40c: the whole model with fresh eyes, away from the sync layer.

Scope: pinned identities, signed grants, signed writes, authenticated settings,
validated names, sidecars, migration of older vaults, the recovery key,
capability links, history/restore, and the local vault-folder writer.

(Findings are filled in below as they are established.)
"""
