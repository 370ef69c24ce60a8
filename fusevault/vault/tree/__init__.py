"""One user's namespace in memory and who may write in it."""
