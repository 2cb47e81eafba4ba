"""Task names and the defaults behind the settings, each with what it is.

Redis key names live with the store layer that owns them (`worker.store.keys`).
"""

from __future__ import annotations

SERVICE_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
"""Celery's worker log format, for the roles and processes Celery does not set up (the webhook receiver,
the metrics exporter, the poll loop's process)."""
MANAGED_BY_KEY = "managed_by"
"""Metadata key that marks a vector store as created by this system."""
MANAGED_BY = "assistant-jobs"
"""Value of the ``managed_by`` metadata key on vector stores this system creates."""

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
TASK_REQUEUE = "aj.{kind}.requeue"
"""Cancel a background response stuck ``queued`` and create it again (once; then the job fails)."""
TASK_REDRIVE = "aj.{kind}.redrive"
"""Look at a job the watchdog found stalled and send it on (or end it ``stalled``)."""
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
OUTBOX_GRACE_S = 10.0
"""How long a staged message waits for its sender to send it before the poll loop sends it instead (the
sender died, or the broker was down)."""
WATCHDOG_EVERY_S = 30.0
"""Seconds between watchdog passes (one worker at a time runs one)."""
STALL_AFTER_S = 120.0
"""A job whose message has been in flight this long while the broker holds nothing for its queues is
re-driven. Well above the longest a message can legitimately be out of every queue (a running task's
hard time limit; a killed worker's message, given back after the visibility timeout), short enough that a
message lost in kombu's window between a worker's pop and its record of the message as unacknowledged (a
worker SIGKILLed in that instant) costs two minutes, not ten."""
OWNERLESS_AFTER_S = 60.0
"""How long a live job must have sat in its status before the watchdog judges it (so a job in the middle
of a step is never mistaken for a stalled one)."""
MAX_REDRIVES = 3
"""Re-drives a job gets; one more stall ends it ``failed`` with code ``stalled``."""
POLL_LEASE_S = 15.0
"""How long a poller holds a claimed poll before another may take it."""
BATCH_SIZE = 2_000
"""File ids per file batch (the API's maximum)."""
UPLOAD_CONCURRENCY = 8
"""Uploads in flight at once per indexing task."""
SUBMIT_CHUNK = 100
"""Job ids per start message from `submit_many`: few messages, each started as one group (see
`START_CONCURRENCY`); a message that runs past `START_SLICE_S` passes its rest on, so a finish waiting
for a pool process never waits long behind a start."""
START_CONCURRENCY = 100
"""Run starts a pool process drives at once (their creates in flight together)."""
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
UPLOADED_EVENT = "job.uploaded"
"""The event an indexing job's worker announces as its uploads return, ``{"uploaded": n, "total": m}``
(at most twice a second; the record is not written): the record's ``progress`` and ``job.progress``
count the indexing that follows."""
