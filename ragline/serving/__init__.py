"""The HTTP API (`ragline serve`): search, context, answers and an OpenAI-compatible chat endpoint."""
