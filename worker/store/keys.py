"""Every Redis key the system writes, with what it holds. Only the store layer (``worker.store``) uses
these names: a producer, a task or the poll loop asks the store, it never touches a key itself.

Every key starts with ``PREFIX`` so one Redis can be shared and a ``SCAN aj:*`` shows all of it. Each key
has a bound (a TTL, a cap, or a sweep), because ``maxmemory-policy noeviction`` turns unbounded growth into
refused writes; the bound is named beside it.
"""

from __future__ import annotations

PREFIX = "aj:"

# --- Jobs (worker.store.jobs) ---------------------------------------------------------------------
JOB = PREFIX + "job:{id}"
"""Hash per job: ``v`` (version for compare-and-set), ``status``, ``kind``, ``record`` (JobRecord JSON).
Bound: expires `result_ttl` after the job ends; every live job ends by its deadline."""
STATUS_INDEX = PREFIX + "status:{status}"
"""Sorted set per status of job ids, scored by when the job entered it. Bound: ended statuses are trimmed
past `result_ttl` at each end, and the jobs sweep drops entries whose record expired."""
EVENTS = PREFIX + "events"
"""Stream of job events (job.queued ... job.completed). Bound: MAXLEN ~ `events_maxlen`, and the jobs
sweep trims events older than `result_ttl`."""
DONE = PREFIX + "done:{id}"
"""List holding one item once the job ended; waiters BLMOVE it onto itself, so all wake. Bound: TTL."""
IDEMPOTENCY = PREFIX + "idem:{key}"
"""String: idempotency key -> job id. Bound: TTL `idempotency_ttl`."""
DEAD_LETTERS = PREFIX + "dead"
"""Sorted set of job ids that failed for good, scored by when they landed there. Bound: entries whose
record expired are dropped by the jobs sweep and on every listing."""

# --- The poll schedule and outbox (worker.store.schedule) ----------------------------------------
POLLS = PREFIX + "polls:{kind}"
"""Sorted set per job kind (``aj:polls:run``, ``aj:polls:index``, ``aj:polls:cleanup``) of job ids scored by
when the poll loop should act on them (ms). A claim moves the score to the lease's end; a job handed to a
Celery message is *parked* at ``PARKED_MS + when``. A job's entry is always in its own kind's set, so a poll
loop claims the kinds it serves only (`Settings.poll_kinds`). At most one entry per live job. Bound: an
entry goes with its job's end; the jobs sweep drops entries of jobs that are gone."""
LEGACY_POLLS = PREFIX + "polls"
"""The one sorted set of every kind's entries, before the schedule was split per kind: moved into the
per-kind sets by the first poll loop that starts (`Schedule.migrate`), then gone."""
POLL_ENTRIES = PREFIX + "pollmeta"
"""Hash job id -> the entry (`worker.polls`): what the poll loop does when the job falls due."""
POLL_SENT = PREFIX + "pollsent"
"""Hash job id -> the Celery task id of the message that carries the job now; the task that runs it
clears the job's parked entry only when the id is still its own. Bound: as `POLLS`."""
POLL_CLAIMS = PREFIX + "pollclaims"
"""Hash poll loop (its worker's node name) -> entries it claimed, to see how the polling is shared. Bound:
one field per poll loop; the hash expires a day after the last claim."""

# --- One active run per thread (worker.store.threads) ---------------------------------------------
THREAD_HOLDER = PREFIX + "thread:{thread}:active"
"""String: the job id holding the thread (or conversation) now. Bound: TTL past the longest deadline."""
THREAD_QUEUE = PREFIX + "thread:{thread}:queue"
"""List of job ids waiting for the thread, oldest first. Bound: TTL past the longest deadline, renewed on
every push; Redis drops an empty list."""

# --- Webhook wake-ups (worker.store.wakeups) ---------------------------------------------------------
RESPONSE_JOB = PREFIX + "response:{id}"
"""String: background response id -> the job it belongs to, so a webhook can wake the job. Bound: TTL past
the job's deadline."""
EARLY_EVENT = PREFIX + "early:{id}"
"""String: a webhook about a response no job had recorded yet (it overtook the create's answer). Bound: TTL
of minutes."""
WEBHOOK_DELIVERY = PREFIX + "hook:{id}"
"""String per webhook delivery id already acted on, so a duplicate has no effect. Bound: TTL of minutes."""

# --- Step leases (worker.store.leases) --------------------------------------------------------------
LEASE = PREFIX + "lease:{job_id}"
"""String holding the token of the one task doing a job's creating step (a run's create, an indexing
job's uploads and batches, a clean-up's deletes). Bound: TTL of the hard time limit."""

# --- Indexing uploads (worker.store.uploads) -------------------------------------------------------
UPLOADS = PREFIX + "uploads:{job_id}"
"""Hash per indexing job: local path -> uploaded file id, written as each upload returns. Bound: TTL."""
UPLOADING = PREFIX + "uploading:{job_id}"
"""Hash per indexing job: path -> unix time an upload of it began (left behind only by a killed worker,
whose orphan uploads a retry adopts). Bound: TTL."""

# --- Inventory for the clean-up (worker.store.inventory) --------------------------------------------
INVENTORY_THREADS = PREFIX + "inventory:threads"
"""Sorted set of thread ids this system created or used, scored by last activity. Bound: the threads
sweep deletes idle ones and forgets them."""
INVENTORY_CONVERSATIONS = PREFIX + "inventory:conversations"
"""Sorted set of conversation ids this system created or used, scored by last activity. Bound: as threads."""
INVENTORY_BORROWED = PREFIX + "inventory:borrowed"
"""Set of thread and conversation ids a producer handed in (left alone by default). Bound: forgotten with
their thread or conversation."""
INVENTORY_FILES = PREFIX + "inventory:files"
"""Set of file ids this system uploaded. Bound: the files sweep forgets deleted and vanished ones."""
INVENTORY_STORES = PREFIX + "inventory:stores"
"""Set of vector store ids this system created. Bound: the stores sweep forgets deleted ones."""

# --- Clean-up jobs (worker.store.cleanup) ------------------------------------------------------------
CLEANUP_TODO = PREFIX + "cleanup:{job_id}:todo"
"""List of JSON items ``{"t": target, "id": ...}`` a clean-up job still has to delete. Bound: TTL past the
job's deadline, deleted when it ends."""
CLEANUP_PACE = PREFIX + "cleanup:pace"
"""String: unix time before which no further clean-up delete may start (the shared rate). Bound: TTL."""

# --- Shared Retry-After (worker.store.gates) ---------------------------------------------------------
GATE = PREFIX + "gate:{route}"
"""String per endpoint ("POST /v1/responses"): unix time before which no worker calls it. Bound: TTL."""

# --- Metrics (worker.store.counters) -------------------------------------------------------------------
METRICS_API = PREFIX + "metrics:api"
"""Hash ``{endpoint}|{outcome}`` -> API requests workers made. Bound: endpoints x outcomes fields."""
METRICS_WEBHOOKS = PREFIX + "metrics:webhooks"
"""Hash: webhook deliveries by outcome (``woken``, ``duplicate``, ``unknown``, ``rejected``...) and run ends
by how they were learnt (``end_by_webhook``, ``end_by_poll``). Bound: a handful of fields."""

# --- Broker quarantine (worker.store.quarantine) -------------------------------------------------------
QUARANTINE = PREFIX + "quarantine"
"""List of malformed broker messages workers set aside instead of dying on them, newest first: the bytes as
popped (or, for a message only Celery could not read, its envelope as JSON). Read it to see what a
producer sent wrong. Bound: capped at `worker.store.quarantine.QUARANTINE_MAX`."""

# --- Watchdog (worker.watchdog) -----------------------------------------------------------------------
WATCHDOG_LOCK = PREFIX + "watchdog"
"""String held (with a TTL) by the one worker running a watchdog pass."""

# --- Beat (celery-redbeat owns these) -------------------------------------------------------------------
BEAT_PREFIX = PREFIX + "beat:"
"""Prefix of redbeat's keys: one hash per schedule entry, the schedule set, and the lock one beat holds."""
