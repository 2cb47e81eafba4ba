-- Write a new `queued` job in one step: its record, its index entry, its `job.queued` event, its
-- idempotency key, its place in its thread's queue, and its start message in the outbox (a schedule
-- entry due after a grace period: the producer sends the message at once and parks the entry, and if it
-- never does, the poll loop sends it when the entry falls due).
-- KEYS[1] job hash                 aj:job:{id}
-- KEYS[2] queued index             aj:status:queued
-- KEYS[3] events stream            aj:events
-- KEYS[4] idempotency key          aj:idem:{key}, or '' when the request has none
-- KEYS[5] thread queue             aj:thread:{thread}:queue, or '' when the job does not wait its turn
-- KEYS[6] the job kind's schedule   aj:polls:{kind}
-- KEYS[7] schedule entries         aj:pollmeta
-- KEYS[8] schedule sent ids        aj:pollsent
-- ARGV[1] job id
-- ARGV[2] record JSON
-- ARGV[3] kind
-- ARGV[4] now (unix seconds)
-- ARGV[5] events stream max length
-- ARGV[6] idempotency key TTL (seconds)
-- ARGV[7] thread queue TTL (seconds)
-- ARGV[8] start entry JSON
-- ARGV[9] start entry due (ms): the outbox's grace
-- ARGV[10] task id of the message the producer sends
-- Returns {1, job id} when written, {0, existing job id} when the idempotency key names a job already.
if KEYS[4] ~= '' then
  local existing = redis.call('GET', KEYS[4])
  if existing then return {0, existing} end
  redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[6])
end
redis.call('HSET', KEYS[1], 'v', 1, 'status', 'queued', 'kind', ARGV[3], 'record', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'type', 'job.queued', 'job_id', ARGV[1],
           'kind', ARGV[3], 'status', 'queued', 'at', ARGV[4], 'data', '{}')
if KEYS[5] ~= '' then
  redis.call('RPUSH', KEYS[5], ARGV[1])
  redis.call('EXPIRE', KEYS[5], ARGV[7])
end
redis.call('ZADD', KEYS[6], ARGV[9], ARGV[1])
redis.call('HSET', KEYS[7], ARGV[1], ARGV[8])
redis.call('HSET', KEYS[8], ARGV[1], ARGV[10])
return {1, ARGV[1]}
