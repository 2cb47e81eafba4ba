-- Record which job a background response belongs to, so a webhook about it can wake the job; answer
-- whether an event about it already came (the webhook overtook the create's answer).
-- KEYS[1] response -> job          aj:response:{id}
-- KEYS[2] early event              aj:early:{id}
-- ARGV[1] job id
-- ARGV[2] seconds the mapping is kept (past the job's deadline)
-- Returns 1 when an event was waiting (and forgets it), else 0.
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return redis.call('DEL', KEYS[2])
