-- Write the poll loop's outcomes for claims it still holds (its token still the entry's score): a
-- reschedule moves the entry to its next due time (with its new entry, when given); a park moves it far
-- into the future and records the Celery task id of the message that now carries the job. A claim whose
-- token no longer matches (its lease ran out and another took it, or a task rewrote the entry) is skipped.
-- KEYS[1] schedule                 aj:polls
-- KEYS[2] schedule entries         aj:pollmeta
-- KEYS[3] schedule sent ids        aj:pollsent
-- ARGV[1] how many reschedules follow
-- then per reschedule: id, token, due (ms), entry JSON or '' to keep it
-- then per park: id, token, parked score, task id
-- Returns the number of entries written.
local n = tonumber(ARGV[1])
local done = 0
local i = 2
for _ = 1, n do
  local id, token = ARGV[i], ARGV[i + 1]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) == tonumber(token) then
    redis.call('ZADD', KEYS[1], ARGV[i + 2], id)
    if ARGV[i + 3] ~= '' then redis.call('HSET', KEYS[2], id, ARGV[i + 3]) end
    redis.call('HDEL', KEYS[3], id)
    done = done + 1
  end
  i = i + 4
end
while i <= #ARGV do
  local id, token = ARGV[i], ARGV[i + 1]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) == tonumber(token) then
    redis.call('ZADD', KEYS[1], ARGV[i + 2], id)
    redis.call('HSET', KEYS[3], id, ARGV[i + 3])
    done = done + 1
  end
  i = i + 4
end
return done
