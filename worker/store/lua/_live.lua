-- live(id, first): whether job `id` is live, that is in one of the live status indexes, which the
-- including script takes as KEYS[first] to the last KEYS entry.
local function live(id, first)
  for i = first, #KEYS do
    if redis.call('ZSCORE', KEYS[i], id) then return true end
  end
  return false
end
