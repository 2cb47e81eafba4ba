-- Let go of a thread (or leave its queue) and hand it to the next live job in its queue, whose start goes
-- into the outbox in the same step (a schedule entry the caller sends at once and parks; the poll loop
-- sends it if the caller never does), so a handover is never lost between the release and the send.
-- KEYS[1] holder                   aj:thread:{thread}:active
-- KEYS[2] queue                    aj:thread:{thread}:queue
-- KEYS[3] the runs' schedule        aj:polls:run
-- KEYS[4] schedule entries         aj:pollmeta
-- KEYS[5] schedule sent ids        aj:pollsent
-- KEYS[6..] the index of each live status, to tell whether a job is live
-- ARGV[1] job id letting go
-- ARGV[2] the start task's name
-- ARGV[3] outbox entry due (ms)
-- ARGV[4] task id of the start message the caller sends
-- ARGV[5] TTL of the holder key (seconds)
-- Returns the job id holding the thread next, or false.
--#include _live
redis.call('LREM', KEYS[2], 0, ARGV[1])
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and live(holder, 6) then return false end
while true do
  local nxt = redis.call('LPOP', KEYS[2])
  if not nxt then redis.call('DEL', KEYS[1]); return false end
  if live(nxt, 6) then
    redis.call('SET', KEYS[1], nxt, 'EX', ARGV[5])
    redis.call('ZADD', KEYS[3], ARGV[3], nxt)
    redis.call('HSET', KEYS[4], nxt, cjson.encode({op = 'task', task = ARGV[2], args = {{nxt}}}))
    redis.call('HSET', KEYS[5], nxt, ARGV[4])
    return nxt
  end
end
