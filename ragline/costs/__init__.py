"""Cost lineage: every model call in llm_calls with its caller, prices, and roll-ups."""
