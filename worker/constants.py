"""Redis key names, stream names and the defaults behind the settings, each with what it is.

Every key the system writes starts with ``KEY_PREFIX`` so one Redis can be shared and a
``SCAN aj:*`` shows all of it.
"""

from __future__ import annotations

KEY_PREFIX = "aj:"

# --- Job store -------------------------------------------------------------------------
JOB_KEY = KEY_PREFIX + "job:{id}"
"""Hash per job: ``v`` (version for compare-and-set), ``status``, ``record`` (JobRecord JSON)."""
STATUS_INDEX_KEY = KEY_PREFIX + "status:{status}"
"""Sorted set per status of job ids, scored by the time the job entered it; for listing."""
EVENTS_STREAM = KEY_PREFIX + "events"
"""Stream of job events (job.queued ... job.completed); readers use XREAD or consumer groups."""
DONE_KEY = KEY_PREFIX + "done:{id}"
"""List holding one item once the job ended; waiters BLMOVE it onto itself, so all wake."""
IDEMPOTENCY_KEY = KEY_PREFIX + "idem:{key}"
"""String: idempotency key -> job id, for `IDEMPOTENCY_TTL_S`."""
DEAD_LETTER_KEY = KEY_PREFIX + "dead"
"""Sorted set of job ids that exhausted their retries, scored by when they landed there."""

# --- Poll scheduler --------------------------------------------------------------------
POLLS_KEY = KEY_PREFIX + "polls"
"""Sorted set of job ids scored by when their next poll is due (ms); a claim moves the score to the
lease's end, so a poll whose worker died falls due again by itself."""
POLL_META_KEY = KEY_PREFIX + "pollmeta"
"""Hash job id -> JSON of what the poller needs (kind, what to retrieve, attempt, deadline)."""

RATE_GATE_KEY = KEY_PREFIX + "gate:{route}"
"""String per endpoint ("POST /v1/responses"): unix time before which no worker calls it (a Retry-After)."""

# --- One active run per thread ---------------------------------------------------------
THREAD_ACTIVE_KEY = KEY_PREFIX + "thread:{thread}:active"
"""String: the job id holding the thread (or conversation) now."""
THREAD_QUEUE_KEY = KEY_PREFIX + "thread:{thread}:queue"
"""List of job ids waiting for the thread, oldest first."""

# --- Indexing jobs ---------------------------------------------------------------------
UPLOADS_KEY = KEY_PREFIX + "uploads:{job_id}"
"""Hash per indexing job: local path -> uploaded file id, written the moment each upload returns, so a
retried job never uploads a path twice. Kept for the job record's retention."""
UPLOADING_KEY = KEY_PREFIX + "uploading:{job_id}"
"""Hash per indexing job: path -> unix time an upload of it began; left behind only by a killed worker,
whose orphan uploads the retry finds by filename and size and adopts instead of uploading again."""
UPLOAD_LOCK_KEY = KEY_PREFIX + "uploadlock:{job_id}"
"""String held (with a TTL of the hard time limit) by the one task uploading a job's files."""

# --- Inventory: what this system created or used, for the clean-up (see worker.inventory) ---
INVENTORY_THREADS_KEY = KEY_PREFIX + "inventory:threads"
"""Sorted set of thread ids this system created or used, scored by their last activity (unix time)."""
INVENTORY_CONVERSATIONS_KEY = KEY_PREFIX + "inventory:conversations"
"""Sorted set of conversation ids this system created or used, scored by their last activity."""
INVENTORY_BORROWED_KEY = KEY_PREFIX + "inventory:borrowed"
"""Set of thread and conversation ids a producer gave (used here, created elsewhere): left alone by the
clean-up unless unmanaged objects are included."""
INVENTORY_FILES_KEY = KEY_PREFIX + "inventory:files"
"""Set of file ids this system uploaded (files carry no metadata); the clean-up job reads it."""
INVENTORY_STORES_KEY = KEY_PREFIX + "inventory:stores"
"""Set of vector store ids this system created (they are also tagged `managed_by` in metadata)."""
MANAGED_BY_KEY = "managed_by"
"""Metadata key that marks a vector store as created by this system."""
MANAGED_BY = "assistant-jobs"
"""Value of the ``managed_by`` metadata key on vector stores this system creates."""

# --- Clean-up ---------------------------------------------------------------------------
CLEANUP_TODO_KEY = KEY_PREFIX + "cleanup:{job_id}:todo"
"""List of JSON items ``{"t": target, "id": ...}`` a clean-up job still has to delete, worked through
in chunks by successive tasks; expires with the job's deadline."""
CLEANUP_PACE_KEY = KEY_PREFIX + "cleanup:pace"
"""String: the unix time before which no further clean-up delete may start (the shared delete rate)."""

# --- Beat (celery-redbeat) ----------------------------------------------------------------
BEAT_KEY_PREFIX = KEY_PREFIX + "beat:"
"""Prefix of redbeat's keys: the schedule, one hash per entry, and the lock only one beat holds."""

# --- Metrics ------------------------------------------------------------------------------
METRICS_API_KEY = KEY_PREFIX + "metrics:api"
"""Hash ``{endpoint}|{class}`` -> count of API requests workers made, by outcome class (ok, 4xx, 404,
429, 5xx, connection, timeout); the exporter reads it."""

# --- Celery task names -----------------------------------------------------------------
# Named per job kind (``aj.run.start``...), so routing by name puts each kind on its own queue.
START_SLICE_S = 0.25
"""Longest a run start message works before it passes its remaining jobs on in a new message."""
TASK_START = "aj.{kind}.start"
"""Start jobs: takes a list of job ids of one kind."""
TASK_FINISH = "aj.{kind}.finish"
"""Finish (or advance) a job whose poll saw a new remote state."""
TASK_FINISH_MANY = "aj.{kind}.finish_many"
"""The same for several jobs in one message (the poll loop joins the hand-overs of one tick)."""
TASK_TOOL_OUTPUTS = "aj.{kind}.tool_outputs"
"""Send tool outputs for a job in requires_action."""
TASK_CANCEL = "aj.{kind}.cancel"
"""Cancel a job's remote run or batches."""
TASK_PREPARE = "aj.{kind}.prepare"
"""Carry on preparing an indexing job: the next chunk of uploads, the next file batches."""
TASK_SCHEDULED_CLEANUP = "aj.cleanup.scheduled"
"""Fired by beat: submit a clean-up job of some targets (so every sweep is a job anyone can read)."""

# --- Defaults (settings override them) ---------------------------------------------------
RESULT_TTL_S = 7 * 24 * 3600
"""How long an ended job's record is kept."""
IDEMPOTENCY_TTL_S = 24 * 3600
"""How long an idempotency key returns the same job."""
EVENTS_MAXLEN = 100_000
"""Approximate cap on the event stream's length."""
DEFAULT_DEADLINE_S = 3600.0
"""A job's deadline when its request names none."""
VISIBILITY_TIMEOUT_S = 30
"""Seconds before an unacknowledged Celery message is handed to another worker; above every hard
time limit so a running task is never delivered twice."""
UNACKED_RESTORE_INTERVAL_S = 5
"""Seconds between kombu's sweeps that give a killed worker's messages back."""
POLL_LEASE_S = 15.0
"""How long a poller holds a claimed poll before another may take it."""
BATCH_SIZE = 2_000
"""File ids per file batch (the API's maximum)."""
UPLOAD_CONCURRENCY = 8
"""Uploads in flight at once per indexing task."""
SUBMIT_CHUNK = 20
"""Job ids per start message from `submit_many`: few messages, yet short tasks, so a finish waiting
for a pool process never waits long behind a start."""
THREAD_IDLE_S = 7 * 24 * 3600.0
"""Idle seconds before a recorded thread or conversation is cleaned up."""
STORE_IDLE_S = 7 * 24 * 3600.0
"""Seconds since a managed vector store's last activity before it is cleaned up."""
FILE_GRACE_S = 3600.0
"""A managed file younger than this is never cleaned up: it may be on its way into a batch."""
CLEANUP_DELETES_PER_S = 5.0
"""API deletes per second all sweeps share."""
CLEANUP_LISTED_MAX = 1000
"""Ids listed per target in a clean-up result (the counts are always complete)."""
SWEEP_THREADS_S = 3600.0
"""Seconds between scheduled thread and conversation sweeps."""
SWEEP_STORES_S = 3600.0
"""Seconds between scheduled vector store sweeps."""
SWEEP_FILES_S = 6 * 3600.0
"""Seconds between scheduled file sweeps (each lists every store's files, so less often)."""
SWEEP_JOBS_S = 3600.0
"""Seconds between scheduled sweeps of the job index and the event stream."""
BEAT_MAX_INTERVAL_S = 5.0
"""Most seconds beat sleeps between schedule checks."""
METRICS_PORT = 9808
"""Default port of the Prometheus exporter."""

# --- Broker quarantine (worker.broker) ------------------------------------------------------
QUARANTINE_KEY = KEY_PREFIX + "quarantine"
"""List of malformed broker messages workers set aside instead of dying on them, newest first: the bytes as
popped (or, for a message only Celery could not read, its envelope as JSON); capped at
``worker.broker.QUARANTINE_MAX``. Read it to see what a producer sent wrong."""
