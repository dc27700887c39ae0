-- Each chunk set's lexemes with their document frequency and an upper bound of their tf (the sums
-- and maxima of the delta rows writers append).
CREATE OR REPLACE VIEW ragline.lexical_terms AS
SELECT d.chunk_set, d.term_id, l.lexeme, sum(d.df)::integer AS df, max(d.max_tf) AS max_tf
FROM ragline.lexical_term_deltas d
JOIN ragline.lexical_lexemes l USING (term_id)
GROUP BY d.chunk_set, d.term_id, l.lexeme;
