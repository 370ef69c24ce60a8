"""One user's namespace in memory: the inode table, names, links, attributes, access, commits."""
