SELECT ragline.compact_lexical_deltas()
