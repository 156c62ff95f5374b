"""One module per console page: what it reads from the store and how it answers."""
