-- Claim up to a limit of due entries for a lease, from one or more kinds' sets, those due first first:
-- each claimed entry's score moves to the lease's end, which is also the claim's token (a settle with
-- another token changes nothing). Parked entries sit far in the future, so they are never due.
-- KEYS[1] schedule entries         aj:pollmeta
-- KEYS[2] claim counts             aj:pollclaims
-- KEYS[3..] the sets of the kinds claimed    aj:polls:{kind}
-- ARGV[1] now (ms)
-- ARGV[2] most entries to claim
-- ARGV[3] lease (ms)
-- ARGV[4] the claiming poll loop's name, counted in KEYS[2] ('' to count nothing)
-- ARGV[5] seconds the claim counts are kept after the last claim
-- Returns {id, entry, id, entry, ..., token}, or {} when nothing is due.
local limit = tonumber(ARGV[2])
local due = {}
for k = 3, #KEYS do
  local rows = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #rows, 2 do due[#due + 1] = {tonumber(rows[i + 1]), k, rows[i]} end
end
if #due == 0 then return {} end
if #KEYS > 3 then table.sort(due, function(a, b) return a[1] < b[1] end) end
local token = tonumber(ARGV[1]) + tonumber(ARGV[3])
local out = {}
local taken = math.min(limit, #due)
for i = 1, taken do
  local key, id = KEYS[due[i][2]], due[i][3]
  redis.call('ZADD', key, token, id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[1], id) or ''
end
if ARGV[4] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[4], taken)
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
out[#out + 1] = tostring(token)
return out
