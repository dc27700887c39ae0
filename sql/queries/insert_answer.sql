INSERT INTO ragline.answers
    (question, answer, abstained, reason, citations, prompt_name, prompt_version, prompt_sha256,
     model, route, cached, prompt_tokens, completion_tokens, support, timings_ms, guardrails,
     generations, context_chunk_ids, query_id)
VALUES
    (%(question)s, %(answer)s, %(abstained)s, %(reason)s, %(citations)s, %(prompt_name)s,
     %(prompt_version)s, %(prompt_sha256)s, %(model)s, %(route)s, %(cached)s, %(prompt_tokens)s,
     %(completion_tokens)s, %(support)s, %(timings_ms)s, %(guardrails)s,
     %(generations)s,  -- {source: generation} that search served when retrieval began
     %(context_chunk_ids)s, %(query_id)s)
RETURNING answer_id
