-- Data version of what search serves: every source's published generation.
SELECT md5(coalesce(string_agg(source || ':' || generation, E'\n' ORDER BY source), ''))
FROM ragline.published_generations
