-- Write the poll loop's outcomes for claims it still holds (its token still the entry's score): a
-- reschedule moves the entry to its next due time (with its new entry, when given); a park moves it far
-- into the future and records the Celery task id of the message that now carries the job. A claim whose
-- token no longer matches (its lease ran out and another took it, or a task rewrote the entry) is skipped.
-- A job's entry is in its kind's set, whichever that is: each is looked for in every set.
-- KEYS[1] schedule entries         aj:pollmeta
-- KEYS[2] schedule sent ids        aj:pollsent
-- KEYS[3..] every kind's set       aj:polls:{kind}
-- ARGV[1] how many reschedules follow
-- then per reschedule: id, token, due (ms), entry JSON or '' to keep it
-- then per park: id, token, parked score, task id
-- Returns the number of entries written.
local function held(id, token)
  for k = 3, #KEYS do
    local score = redis.call('ZSCORE', KEYS[k], id)
    if score then
      if tonumber(score) == tonumber(token) then return KEYS[k] end
      return nil
    end
  end
  return nil
end
local n = tonumber(ARGV[1])
local done = 0
local i = 2
for _ = 1, n do
  local id = ARGV[i]
  local key = held(id, ARGV[i + 1])
  if key then
    redis.call('ZADD', key, ARGV[i + 2], id)
    if ARGV[i + 3] ~= '' then redis.call('HSET', KEYS[1], id, ARGV[i + 3]) end
    redis.call('HDEL', KEYS[2], id)
    done = done + 1
  end
  i = i + 4
end
while i <= #ARGV do
  local id = ARGV[i]
  local key = held(id, ARGV[i + 1])
  if key then
    redis.call('ZADD', key, ARGV[i + 2], id)
    redis.call('HSET', KEYS[2], id, ARGV[i + 3])
    done = done + 1
  end
  i = i + 4
end
return done
