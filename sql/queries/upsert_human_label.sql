-- One label per annotator and item: labelling again replaces the earlier label.
INSERT INTO ragline.human_labels
    (item_id, annotator, faithful, relevant, correct, note, source, created_at, updated_at)
VALUES
    (%(item_id)s, %(annotator)s, %(faithful)s, %(relevant)s, %(correct)s, %(note)s, %(source)s,
     coalesce(%(created_at)s, now()), coalesce(%(created_at)s, now()))
ON CONFLICT (item_id, annotator) DO UPDATE SET
    faithful = EXCLUDED.faithful, relevant = EXCLUDED.relevant, correct = EXCLUDED.correct,
    note = EXCLUDED.note, source = EXCLUDED.source, updated_at = EXCLUDED.updated_at
RETURNING label_id
