"""Work done on a loaded Volume: absorbing, conflicts, history, gc, export, sharing, check, requests."""
