-- Stored vectors of some texts under one model.
SELECT text_hash, embedding FROM ragline.embeddings WHERE model_id = %s AND text_hash = ANY(%s)
