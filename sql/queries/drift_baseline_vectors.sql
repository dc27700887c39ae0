-- The pinned baseline vectors of one model, by source.
SELECT source, embedding FROM ragline.drift_baseline WHERE model_id = %s ORDER BY source, text_hash
