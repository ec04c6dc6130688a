-- GCRA for every policy of one request, in one atomic step, on the server's clock.
--
-- KEYS[i]      the key of policy i (one per policy that applies to the request)
-- ARGV[1]      how many requests to charge: 1, or a lease
-- ARGV[2i]     policy i's emission interval T, in microseconds (may be fractional)
-- ARGV[2i+1]   policy i's tolerance, burst x T, in microseconds
--
-- Each key holds its theoretical arrival time (TAT) in whole microseconds since the Unix epoch
-- (about 1.8e15: exact in a Lua double, whose integers are exact to 2^53), and expires when its
-- bucket is full again, so Redis holds only keys that are still spending.
--
-- ARGV[1] requests are charged when every policy has room for them all; else one, when every
-- policy has room for one; else none, and nothing is charged to any policy. Reply: the count charged, then per policy
-- limited (0 or 1), remaining, reset (us), retry after (us).
-- Writes after TIME need effects replication (the default from Redis 5; asked for before it).
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local wanted = tonumber(ARGV[1])
local tats = {}
local granted = wanted
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  tats[i] = tat
  local room = math.floor((tolerance - (tat - now)) / interval)
  if room < granted then granted = room end
end
if granted < 0 then granted = 0 end
-- A lease is granted whole or not at all: short of one, the asking request alone. A key at its
-- limit is then leased in whole batches, not one request per round trip.
if granted < wanted and granted > 1 then granted = 1 end
local reply = { granted }
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tats[i]
  local limited, retry = 0, 0
  if granted > 0 then
    tat = tat + granted * interval
    -- Rounded up, so an interval under a microsecond still moves the TAT; '%.0f' because
    -- tostring would write 1.8e+15 and lose the microseconds.
    tat = math.ceil(tat)
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  elseif tat + interval - now > tolerance then
    limited = 1
    retry = tat + interval - now - tolerance
  end
  local remaining = math.floor((tolerance - (tat - now)) / interval)
  if remaining < 0 then remaining = 0 end
  reply[#reply + 1] = limited
  reply[#reply + 1] = remaining
  reply[#reply + 1] = math.ceil(tat - now)
  reply[#reply + 1] = math.ceil(retry)
end
return reply
