-- What search serves, as one value: each source's published generation and the serving model. An
-- answer cache row hits only while this is what it was built on.
CREATE OR REPLACE VIEW ragline.served_data AS
SELECT jsonb_build_object(
           'generations', coalesce((SELECT jsonb_object_agg(source, generation) FROM ragline.published_generations), '{}'::jsonb),
           'serving_model', (SELECT model_id FROM ragline.serving_model)
       ) AS state
