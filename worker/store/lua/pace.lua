-- Reserve the next free slot of the shared clean-up delete rate: every caller, on every host, takes the
-- slot after the last one reserved, so deletes are spaced evenly across all sweeps.
-- KEYS[1] pace                     aj:cleanup:pace
-- ARGV[1] now (unix seconds)
-- ARGV[2] gap between deletes (seconds)
-- Returns the seconds to wait before the reserved slot.
local now = tonumber(ARGV[1])
local at = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local nxt = at + tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'PX', math.ceil((nxt - now) * 1000) + 1000)
return string.format('%.6f', at - now)
