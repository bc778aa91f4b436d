"""The Lua scripts of the Redis counters (pipeline/counters/redis.py), one call each, on Redis's clock.

Keys (all under one hash tag `{<prefix>}` so a script's keys share a cluster slot):
  r:<window>          sorted set, the rpm log: one member per admitted request, scored by its ms
  t:<window>          hash, tpm buckets: bucket number (ms // bucket_ms) → tokens
  b:<month>:<budget>  hash: s = spent, r = reserved (the sum of the reservations in flight)
  h:<month>:<budget>  sorted set: "<reservation>:<amount>" → the ms it expires at
An rpm log and the tpm buckets expire once idle for a window (and a lease); a month's budget keys
BUDGET_TTL_MS after its first use.

Leases (pipeline/counters/leases.py): an admit far from a limit also hands its gateway some of what is left,
to spend without asking again. An rpm lease is `n` members "<member>#<k>" scored at the lease's end, so
each stands for a request made before that moment and is counted for a whole window after it; a budget
lease is a reservation "<member>#b:<amount>" like a request's. Neither is granted when it would cover
fewer than MIN_UNITS requests or more than a HEADROOMth of what is left: small limits, and every limit
near its end, are counted here request by request.
"""

from __future__ import annotations

import hashlib

from pipeline.counters.local import BUCKETS

HEADROOM = 4  # a lease is granted only while at least this many times it is left
MIN_UNITS = 8  # and only when it covers at least this many requests (or their reservations)

CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: r, t per window, then b, h per budget. ARGV: window_ms, bucket_ms, windows, (rpm, tpm) per
# window, limit per budget, reserve, hold_ms, ttl_ms, reservation, lease_ms, then the lease wanted per
# window (requests) and per budget (nano-USD). Returns {allowed, kind (1 rpm, 2 tpm, 3 budget), index of
# the refusing window or budget, retry_after_ms, member, 4 numbers per window, the lease granted per
# window, then per budget}.
ADMIT = (
    (
        CLOCK
        + """
local window, bucket_ms, nw = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local first = math.floor(now / bucket_ms) - $BUCKETS
local kind, index, retry, out, counts = 0, 0, 0, {}, {}
local function refuse(k, i, ms)
  if kind == 0 then kind, index = k, i end
  if ms > retry then retry = ms end
end
for i = 1, nw do
  local rpm, tpm = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  local rkey, tkey = KEYS[2 * i - 1], KEYS[2 * i]
  local left, reset, tleft, treset = 0, 0, 0, 0
  if rpm > 0 then
    redis.call('ZREMRANGEBYSCORE', rkey, '-inf', now - window)
    local n = redis.call('ZCARD', rkey)
    counts[i] = n
    left = math.max(0, rpm - n)
    if n > 0 then
      reset = tonumber(redis.call('ZRANGE', rkey, 0, 0, 'WITHSCORES')[2]) + window - now
    end
    if n >= rpm then
      refuse(1, i, tonumber(redis.call('ZRANGE', rkey, n - rpm, n - rpm, 'WITHSCORES')[2]) + window - now)
    end
  end
  if tpm > 0 then
    local all, stale, live, used = redis.call('HGETALL', tkey), {}, {}, 0
    for j = 1, #all, 2 do
      local b = tonumber(all[j])
      if b <= first then
        stale[#stale + 1] = all[j]
      else
        live[#live + 1] = {b, tonumber(all[j + 1])}
        used = used + live[#live][2]
      end
    end
    if #stale > 0 then redis.call('HDEL', tkey, unpack(stale)) end
    table.sort(live, function(a, b) return a[1] < b[1] end)
    tleft = math.max(0, tpm - used)
    if #live > 0 then treset = (live[1][1] + $BUCKETS) * bucket_ms - now end
    if used >= tpm then
      for _, bucket in ipairs(live) do
        used = used - bucket[2]
        if used < tpm then
          refuse(2, i, (bucket[1] + $BUCKETS) * bucket_ms - now)
          break
        end
      end
    end
  end
  out[i] = {left, reset, tleft, treset}
end
local nb = (#KEYS - 2 * nw) / 2
local base = 4 + 2 * nw
local reserve, hold_ms = tonumber(ARGV[base + nb]), tonumber(ARGV[base + nb + 1])
local ttl, id = ARGV[base + nb + 2], ARGV[base + nb + 3]
local lease_ms = tonumber(ARGV[base + nb + 4])
local wants = base + nb + 4  -- ARGV[wants + i]: window i's lease; ARGV[wants + nw + j]: budget j's
local limits, fresh, granted = {}, {}, {}
for x = 1, nw + nb do granted[x] = 0 end
if kind == 0 then
  for j = 1, nb do
    local b, h = KEYS[2 * nw + 2 * j - 1], KEYS[2 * nw + 2 * j]
    local state = redis.call('HMGET', b, 's', 'r')
    fresh[j] = not state[1] and not state[2]
    local spent, reserved = tonumber(state[1]) or 0, tonumber(state[2]) or 0
    local limit = tonumber(ARGV[base + j - 1])
    limits[j] = limit
    if spent + reserved >= limit then
      -- before refusing: release reservations never settled (their gateway died), then look again
      local gone = redis.call('ZRANGEBYSCORE', h, '-inf', now)
      if #gone > 0 then
        local amount = 0
        for _, member in ipairs(gone) do amount = amount + tonumber(string.match(member, ':(%d+)$')) end
        redis.call('HINCRBY', b, 'r', -amount)
        redis.call('ZREMRANGEBYSCORE', h, '-inf', now)
        reserved = reserved - amount
      end
      if spent + reserved >= limit then
        kind, index = 3, j
        break
      end
    end
  end
end
local member = t[1] .. '.' .. t[2] .. ':' .. id
if kind == 0 then
  for i = 1, nw do
    local rpm = tonumber(ARGV[2 + 2 * i])
    if rpm > 0 then
      local rkey = KEYS[2 * i - 1]
      redis.call('ZADD', rkey, now, member)
      local grant = math.min(tonumber(ARGV[wants + i]), math.floor((rpm - counts[i] - 1) / $HEADROOM))
      if grant >= $MIN_UNITS then  -- each leased request is counted as made at the lease's end
        local add = {}
        for k = 1, grant do
          add[2 * k - 1], add[2 * k] = now + lease_ms, member .. '#' .. k
        end
        redis.call('ZADD', rkey, unpack(add))
        granted[i] = grant
      end
      redis.call('PEXPIRE', rkey, window + lease_ms)
      out[i][1] = out[i][1] - 1 - granted[i]
      if counts[i] == 0 then out[i][2] = window end
    end
  end
  for j = 1, nb do
    local b, h = KEYS[2 * nw + 2 * j - 1], KEYS[2 * nw + 2 * j]
    -- a reservation is the member "<id>:<amount>", scored by when it expires
    if reserve > 0 and redis.call('ZADD', h, 'NX', now + hold_ms, id .. ':' .. reserve) == 1 then
      redis.call('HINCRBY', b, 'r', reserve)
    end
    local want = tonumber(ARGV[wants + nw + j])
    if want > 0 then
      local state = redis.call('HMGET', b, 's', 'r')
      local free = limits[j] - (tonumber(state[1]) or 0) - (tonumber(state[2]) or 0)
      local grant = math.min(want, math.floor(free / $HEADROOM))
      if grant >= $MIN_UNITS * math.max(reserve, 1)
          and redis.call('ZADD', h, 'NX', now + hold_ms, member .. '#b:' .. grant) == 1 then
        redis.call('HINCRBY', b, 'r', grant)
        granted[nw + j] = grant
      end
    end
    if fresh[j] then  -- a month's budget keys live 40 days from their first use
      redis.call('PEXPIRE', b, ttl)
      redis.call('PEXPIRE', h, ttl)
    end
  end
end
local reply = {kind == 0 and 1 or 0, kind, index, retry, member}
for i = 1, nw do
  for k = 1, 4 do reply[#reply + 1] = math.max(0, out[i][k]) end
end
for x = 1, nw + nb do reply[#reply + 1] = granted[x] end
return reply
"""
    )
    .replace("$BUCKETS", str(BUCKETS))
    .replace("$HEADROOM", str(HEADROOM))
    .replace("$MIN_UNITS", str(MIN_UNITS))
)

# KEYS: t per window, then b, h per budget. ARGV: bucket_ms, windows, tokens, reservation, cost, ttl_ms,
# reserved.
SETTLE = (
    CLOCK
    + """
local bucket_ms, nw, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local id, cost, ttl, reserved = ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
if tokens > 0 then
  local bucket = math.floor(now / bucket_ms)
  for i = 1, nw do
    redis.call('HINCRBY', KEYS[i], bucket, tokens)
    if redis.call('HLEN', KEYS[i]) > $BUCKETS then
      local all, stale = redis.call('HKEYS', KEYS[i]), {}
      for _, b in ipairs(all) do
        if tonumber(b) <= bucket - $BUCKETS then stale[#stale + 1] = b end
      end
      if #stale > 0 then redis.call('HDEL', KEYS[i], unpack(stale)) end
    end
    redis.call('PEXPIRE', KEYS[i], ($BUCKETS + 1) * bucket_ms)
  end
end
for j = nw + 1, #KEYS, 2 do
  local b, h = KEYS[j], KEYS[j + 1]
  if reserved > 0 and redis.call('ZREM', h, id .. ':' .. reserved) == 1 then
    redis.call('HINCRBY', b, 'r', -reserved)
  end
  if redis.call('HINCRBY', b, 's', cost) == cost then  -- the month's first booking
    redis.call('PEXPIRE', b, ttl)
  end
end
return 0
"""
).replace("$BUCKETS", str(BUCKETS))

# KEYS: b per budget. ARGV: ttl_ms, then the spend per budget.
SEED = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 's', ARGV[i + 1], 'r', 0)
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  end
end
return 0
"""


class Script:
    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()


# Settlements deferred by `defer_settle` (and leases given back) travel with the next admit (or alone after
# SETTLE_DELAY_S): one script call runs them in order. ARGV: the number of ops, then per op its kind ("s"
# settle, "z" the members to remove from an rpm log, "a" admit), its number
# of keys and of args, and its args; KEYS: every op's keys in order. Returns the admit's reply, else 0.
BATCH = f"""
local function settle(KEYS, ARGV)
{SETTLE}
end
local function admit(KEYS, ARGV)
{ADMIT}
end
local ki, ai, reply = 1, 2, 0
for _ = 1, tonumber(ARGV[1]) do
  local kind, nk, na = ARGV[ai], tonumber(ARGV[ai + 1]), tonumber(ARGV[ai + 2])
  ai = ai + 3
  local keys, args = {{}}, {{}}
  for x = 1, nk do keys[x] = KEYS[ki]; ki = ki + 1 end
  for x = 1, na do args[x] = ARGV[ai]; ai = ai + 1 end
  if kind == 'a' then
    reply = admit(keys, args)
  elseif kind == 'z' then  -- leased requests not made: no longer counted
    redis.call('ZREM', keys[1], unpack(args))
  else
    settle(keys, args)
  end
end
return reply
"""

SCRIPTS = {
    name: Script(source)
    for name, source in (("admit", ADMIT), ("settle", SETTLE), ("seed", SEED), ("batch", BATCH))
}
