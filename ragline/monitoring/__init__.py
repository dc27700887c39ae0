"""The monitoring plane: the MMD drift test and the drift of the corpus and of the queries."""
