"""Documents and objects: nodes, versions, users, groups, settings, grants, trust; sealed and opened."""
