-- Take jobs off the schedule whose entry still waits on the given message: the task that ran it is done
-- and did not give the job a new entry (it ended, or waits its turn on a thread, whose queue owns it now).
-- KEYS[1] schedule entries         aj:pollmeta
-- KEYS[2] schedule sent ids        aj:pollsent
-- KEYS[3..] every kind's set       aj:polls:{kind}
-- ARGV[1] the Celery task id
-- ARGV[2..] job ids
-- Returns the number of entries removed.
local done = 0
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    for k = 3, #KEYS do redis.call('ZREM', KEYS[k], ARGV[i]) end
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    done = done + 1
  end
end
return done
