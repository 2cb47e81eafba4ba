-- Give a stalled job a re-drive entry, due now, only if it is still stalled as the watchdog saw it: for a
-- job with no entry, only if it still has none (in any kind's set); for a parked job, only if the same
-- message still carries it. A job that moved meanwhile keeps its entry.
-- KEYS[1] the job kind's set       aj:polls:{kind}
-- KEYS[2] schedule entries         aj:pollmeta
-- KEYS[3] schedule sent ids        aj:pollsent
-- KEYS[4..] every kind's set       aj:polls:{kind}
-- ARGV[1] job id
-- ARGV[2] the re-drive entry JSON
-- ARGV[3] due (ms)
-- ARGV[4] the task id the parked entry waited on, or '' for a job seen with no entry
-- Returns 1 when the entry was written, 0 when the job had moved.
if ARGV[4] == '' then
  for k = 4, #KEYS do
    if redis.call('ZSCORE', KEYS[k], ARGV[1]) then return 0 end
  end
elseif redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[4] then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
