"""The vault domain, in floors: each floor imports only the floors below it.

    services/   work done on a loaded Volume: absorbing others' changes, conflicts,
                recovery, gc, export, share operations, check, control requests
    volume.py   the facade: Tree + Files + access checks, the one API that fs/,
                agent/, sync/, imports/, links/ and services/ call
    tree/ | files/   side by side, neither imports the other:
                tree/   one user's namespace in memory: the inode table (private),
                        names, links, attributes, who may do what, commits
                files/  the contents of files: open files, versions, rekeying,
                        sealed blocks (content.py) and where they sit
    model/      documents and objects: nodes, versions, users, groups, settings,
                grants, trust, the ledger; sealed and opened
    format/     bytes on disk: the vault directory, framing, manifests, padding,
                crash-safe writes

TYPE_CHECKING imports count too: where a lower floor must talk to an upper
object it declares a Protocol of what it needs (tree/authorship.py's Held,
model/ledger.py's Held, files/ports.py's TreePort).  Enforced by the
import-linter contract "vault floors" in pyproject.toml (``lint-imports``).
"""
