INSERT INTO ragline.serving_model (model_id, dim) VALUES (%(model_id)s, %(dim)s)
ON CONFLICT (singleton) DO UPDATE
SET model_id = EXCLUDED.model_id, dim = EXCLUDED.dim, updated_at = now()
