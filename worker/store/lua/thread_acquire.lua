-- Take a thread (or conversation) for a job, or join its queue, per the job's strategy. A holder or a
-- queue head whose job is no longer live (it ended, or its record is gone) is passed over.
-- KEYS[1] holder                   aj:thread:{thread}:active
-- KEYS[2] queue                    aj:thread:{thread}:queue
-- KEYS[3..] the index of each live status (aj:status:queued, ...), to tell whether a job is live
-- ARGV[1] job id
-- ARGV[2] strategy: enqueue | reject | interrupt
-- ARGV[3] TTL of the holder and queue keys (seconds): past the longest deadline
-- Returns {'acquired', job id} | {'waiting', the holder or the job ahead} | {'busy', the holder}.
--#include _live
local me = ARGV[1]
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= me and not live(holder, 3) then
  redis.call('DEL', KEYS[1]); holder = false
end
if holder == me then return {'acquired', me} end
if ARGV[2] == 'reject' then
  if holder then return {'busy', holder} end
elseif ARGV[2] == 'interrupt' then
  redis.call('LREM', KEYS[2], 0, me); redis.call('LPUSH', KEYS[2], me)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
elseif not redis.call('LPOS', KEYS[2], me) then
  redis.call('RPUSH', KEYS[2], me)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
if holder then return {'waiting', holder} end
while true do
  local head = redis.call('LINDEX', KEYS[2], 0)
  if not head or head == me then break end
  if live(head, 3) then return {'waiting', head} end
  redis.call('LPOP', KEYS[2])
end
redis.call('LREM', KEYS[2], 0, me)
redis.call('SET', KEYS[1], me, 'EX', ARGV[3])
return {'acquired', me}
