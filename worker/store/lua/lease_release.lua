-- Give back a step lease, only if it is still the holder's (a lease that ran out may be another's now).
-- KEYS[1] the job's lease          aj:lease:{job_id}
-- ARGV[1] the holder's token
-- Returns 1 when it was released, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
