"""The ingest plane: source files to versioned documents, and documents to chunks."""
