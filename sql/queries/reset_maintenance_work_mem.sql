-- Back to the value the server gives a session (the HNSW build raised it for its graph).
RESET maintenance_work_mem
