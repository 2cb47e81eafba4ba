-- Write a job's new record if its version is still the one the writer read (compare-and-set), with its
-- index move and its event; when the job ends, also wake its waiters, set its retention, dead-letter it if
-- asked, and take it off the schedule, so an ended job never keeps a poll or an outbox entry.
-- KEYS[1] job hash                 aj:job:{id}
-- KEYS[2] index of the old status  aj:status:{old}
-- KEYS[3] index of the new status  aj:status:{new}
-- KEYS[4] events stream            aj:events
-- KEYS[5] done list                aj:done:{id}
-- KEYS[6] dead-letter set          aj:dead
-- KEYS[7] the job kind's schedule   aj:polls:{kind}
-- KEYS[8] schedule entries         aj:pollmeta
-- KEYS[9] schedule sent ids        aj:pollsent
-- ARGV[1] JSON object: v (the version read, a string), id, status, kind, now, event ('' for none),
--         ended (bool), ttl (seconds kept after the end), prune_before (unix seconds), dead (bool), maxlen
-- ARGV[2] the new record JSON
-- ARGV[3] the event's data JSON
-- Returns {1, stream id or ''} when written, {0, the current version} when another writer won.
local a = cjson.decode(ARGV[1])
local v = redis.call('HGET', KEYS[1], 'v')
if v ~= a.v then return {0, v or ''} end
redis.call('HSET', KEYS[1], 'v', tonumber(v) + 1, 'status', a.status, 'record', ARGV[2])
if KEYS[2] ~= KEYS[3] then
  redis.call('ZREM', KEYS[2], a.id)
  redis.call('ZADD', KEYS[3], a.now, a.id)
end
local sid = ''
if a.event ~= '' then
  sid = redis.call('XADD', KEYS[4], 'MAXLEN', '~', a.maxlen, '*', 'type', a.event, 'job_id', a.id,
                   'kind', a.kind, 'status', a.status, 'at', a.now, 'data', ARGV[3])
end
if a.ended then
  redis.call('EXPIRE', KEYS[1], a.ttl)
  redis.call('DEL', KEYS[5])
  redis.call('RPUSH', KEYS[5], a.status)
  redis.call('EXPIRE', KEYS[5], a.ttl)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', a.prune_before)
  redis.call('ZREM', KEYS[7], a.id)
  redis.call('HDEL', KEYS[8], a.id)
  redis.call('HDEL', KEYS[9], a.id)
end
if a.dead then redis.call('ZADD', KEYS[6], a.now, a.id) end
return {1, sid}
