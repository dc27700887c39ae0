"""The retrieval plane: dense, lexical and hybrid search, reranking and context assembly."""
