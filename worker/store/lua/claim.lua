-- Claim up to a limit of due entries for a lease: each claimed entry's score moves to the lease's end,
-- which is also the claim's token (a settle with another token changes nothing). Parked entries sit far
-- in the future, so they are never due.
-- KEYS[1] schedule                 aj:polls
-- KEYS[2] schedule entries         aj:pollmeta
-- ARGV[1] now (ms)
-- ARGV[2] most entries to claim
-- ARGV[3] lease (ms)
-- Returns {id, entry, id, entry, ..., token}, or {} when nothing is due.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #ids == 0 then return {} end
local token = tonumber(ARGV[1]) + tonumber(ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], token, id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
out[#out + 1] = tostring(token)
return out
