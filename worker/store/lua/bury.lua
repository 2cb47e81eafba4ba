-- Replace a record that cannot be parsed with a `failed` one (error `corrupt_record`) in one step: its
-- index entries, a `job.failed` event, its waiters woken, a dead letter, its retention, no schedule entry.
-- Nothing happens when the record changed since it was read (someone repaired or rewrote it).
-- KEYS[1] job hash                 aj:job:{id}
-- KEYS[2] events stream            aj:events
-- KEYS[3] done list                aj:done:{id}
-- KEYS[4] dead-letter set          aj:dead
-- KEYS[5] the job kind's schedule   aj:polls:{kind}
-- KEYS[6] schedule entries         aj:pollmeta
-- KEYS[7] schedule sent ids        aj:pollsent
-- KEYS[8] failed index             aj:status:failed
-- KEYS[9..] every other status index, so the job leaves whichever it was in
-- ARGV[1] job id
-- ARGV[2] the unparseable record as read ('' when the field was missing)
-- ARGV[3] the replacement record JSON
-- ARGV[4] kind
-- ARGV[5] now (unix seconds)
-- ARGV[6] seconds to keep the replacement
-- ARGV[7] events stream max length
-- ARGV[8] the event's data JSON
-- Returns 1 when replaced, 0 when the record had changed.
if (redis.call('HGET', KEYS[1], 'record') or '') ~= ARGV[2] then return 0 end
local v = tonumber(redis.call('HGET', KEYS[1], 'v')) or 0
redis.call('HSET', KEYS[1], 'v', v + 1, 'status', 'failed', 'kind', ARGV[4], 'record', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[6])
for i = 9, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
redis.call('ZADD', KEYS[8], ARGV[5], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'type', 'job.failed', 'job_id', ARGV[1],
           'kind', ARGV[4], 'status', 'failed', 'at', ARGV[5], 'data', ARGV[8])
redis.call('DEL', KEYS[3])
redis.call('RPUSH', KEYS[3], 'failed')
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
return 1
