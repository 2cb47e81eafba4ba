-- A webhook said a background response ended: make its job's poll due now, so the poll loop retrieves it
-- once and the usual finish runs (the webhook only wakes; it never carries the result). A delivery seen
-- before (same webhook-id) does nothing; one for a response no job has recorded yet is remembered briefly,
-- so a create whose answer is still on its way learns of the end as soon as it records the id.
-- KEYS[1] delivery marker          aj:hook:{webhook-id}
-- KEYS[2] response -> job          aj:response:{id}
-- KEYS[3] early event              aj:early:{id}
-- KEYS[4] the runs' schedule        aj:polls:run
-- KEYS[5] schedule entries         aj:pollmeta
-- KEYS[6] webhook counters         aj:metrics:webhooks
-- ARGV[1] now (ms)
-- ARGV[2] seconds a delivery id is remembered (duplicates within it do nothing)
-- ARGV[3] seconds an event for an unknown response is remembered
-- ARGV[4] the score from which entries are parked (their message is already in flight)
-- Returns (and counts) 'duplicate' | 'unknown' | 'woken' | 'in_flight' (being polled or handed to a task
-- already) | 'gone' (no entry: the job ended).
local function counted(outcome)
  redis.call('HINCRBY', KEYS[6], outcome, 1)
  return outcome
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then return counted('duplicate') end
local job = redis.call('GET', KEYS[2])
if not job then
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[3])
  return counted('unknown')
end
local score = redis.call('ZSCORE', KEYS[4], job)
if not score then return counted('gone') end
score = tonumber(score)
local now = tonumber(ARGV[1])
if score >= tonumber(ARGV[4]) then return counted('in_flight') end
local raw = redis.call('HGET', KEYS[5], job)
if raw then
  local entry = cjson.decode(raw)
  if entry.op == 'run' then
    entry.woken = true
    redis.call('HSET', KEYS[5], job, cjson.encode(entry))
  end
end
if score > now then redis.call('ZADD', KEYS[4], now, job) end
return counted('woken')
