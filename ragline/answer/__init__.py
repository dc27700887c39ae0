"""The answer plane: answers with citations from retrieved context, prompts, routing, response cache."""
