SELECT count(*) FROM ragline.serving_chunks
