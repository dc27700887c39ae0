SELECT count(*) FROM ragline.published_generations
