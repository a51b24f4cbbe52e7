"""arq workers: WorkerSettings and the jobs, each a thin call into accountgraph."""
