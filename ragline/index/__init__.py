"""The index plane: the embedding ledger, publishing, the serving index and garbage collection."""
