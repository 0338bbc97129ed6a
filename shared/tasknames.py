"""Celery task names and their queues: the dispatcher enqueues by name and never imports the workers."""

INGEST_PLAN = "ingest.plan"
INGEST_CONVERT = "ingest.convert"
INGEST_ASSEMBLE = "ingest.assemble"
REAP = "jobs.reap"

QUEUE_OF = {
    INGEST_PLAN: "cpu",
    INGEST_CONVERT: "cpu",
    INGEST_ASSEMBLE: "cpu",
    REAP: "cpu",
}
