"""The evaluation plane: eval sets, retrieval metrics, scores, the regression gate and variants."""
