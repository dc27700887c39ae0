-- One partition's comparison rows of an eval set, of the given kinds (and candidate, if given).
DELETE FROM ragline.answer_comparisons
WHERE partition = %(partition)s AND eval_set = %(eval_set)s AND kind = ANY(%(kinds)s)
  AND (%(candidate)s::text IS NULL OR candidate = %(candidate)s::text)
