"""Attack round 40b: the sync layer and rollback detection, as the CouchDB server and as a restored backup.

Work in progress.
"""

from __future__ import annotations
