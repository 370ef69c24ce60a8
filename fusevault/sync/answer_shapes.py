"""What a changes entry and a fetched document from a peer must look like before the pull uses them.

The server (or anyone who may write its database, a member given it to sync with) writes the changes
feed and the documents ``_bulk_get`` answers.  An entry or document of another shape raised out of the
pull (an id that is a number, a revision that is a list, no ``changes``, a kind that is a list, which
SQLite's ``type`` column does not take, a ``_revisions.start`` past what ``int`` reads), and as the
checkpoint never passed it, every pull of every device and every join stopped for good (attack round
82a (1); a lone surrogate, 80c (4)).  Such an entry or document is refused alone, and the batch goes on.
"""

from __future__ import annotations

from fusevault.encoding import SAFE_INTEGER, is_text


def entry_shaped(result: object) -> bool:
    """Whether ``result`` is a changes entry as CouchDB writes one: a text id and a non-empty list of
    changes, each with a text revision."""
    if not isinstance(result, dict) or not is_text(result.get("id")):
        return False
    changes = result.get("changes")
    return (isinstance(changes, list) and bool(changes)
            and all(isinstance(change, dict) and is_text(change.get("rev")) for change in changes))


def doc_shaped(doc: object) -> bool:
    """Whether ``doc`` is a document the store can hold: a text id and revision, a kind that is text or
    none, and a revision history (``_revisions``), if any, of a whole generation and text ids."""
    if not isinstance(doc, dict) or not is_text(doc.get("_id")) or not is_text(doc.get("_rev")):
        return False
    kind = doc.get("type")
    if kind is not None and not is_text(kind):
        return False
    history = doc.get("_revisions")
    if history is None:
        return True
    if not isinstance(history, dict):
        return False
    start, ids = history.get("start"), history.get("ids")
    return (type(start) is int and 0 < start <= SAFE_INTEGER and isinstance(ids, list) and bool(ids)
            and all(is_text(rev_id) for rev_id in ids))
