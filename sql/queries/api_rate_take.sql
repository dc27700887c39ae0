-- The generic cell rate algorithm, one atomic step (exact across processes and workers): a key
-- may send `burst` requests at once, then one every `interval`. Returns 0 when the request may
-- pass (and books it), else the seconds until it would.
WITH now_ AS (SELECT clock_timestamp() AS t),
     k AS (
         SELECT key_id, greatest(coalesce(rate_tat, n.t), n.t) AS tat, n.t
         FROM ragline.api_keys, now_ n
         WHERE key_id = %(key_id)s
         FOR UPDATE OF api_keys
     ),
     booked AS (
         UPDATE ragline.api_keys a SET rate_tat = k.tat + %(interval)s
         FROM k
         WHERE a.key_id = k.key_id AND k.tat - k.t <= %(tolerance)s
         RETURNING a.key_id
     )
SELECT CASE WHEN EXISTS (SELECT 1 FROM booked) THEN 0.0
            ELSE extract(epoch FROM (k.tat - k.t - %(tolerance)s)) END
FROM k
