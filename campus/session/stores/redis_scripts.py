"""The Lua scripts of the Redis store (campus/session/stores/redis.py), each one round trip.

Each script declares every key it touches (KEYS), so all of them run on a Cluster; the ones
that take several keys are only called where those keys share a server (not on a Cluster).
"""

# The user index is a sorted set: member = SHA-256(id) (the session key's suffix), score = the
# session's absolute deadline in ms. index() drops members past it and the ones named gone,
# adds a member, and lets the set expire with its longest-lived member (never later).
INDEX_FUNCTION = """
local function index(idx, member, expires_ms, now_ms, gone)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now_ms)
  for _, m in ipairs(gone) do redis.call('ZREM', idx, m) end
  if member ~= '' then redis.call('ZADD', idx, expires_ms, member) end
  local top = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if top[2] then
    redis.call('PEXPIRE', idx, math.max(math.floor(tonumber(top[2]) - tonumber(now_ms)), 1))
  end
end
"""

# KEYS: session key, [key it replaces], [user index]. ARGV: record, ttl ms, replaces?, member,
# expires ms, now ms, member of the key it replaces.
CREATE = (
    INDEX_FUNCTION
    + """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local n = 2
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[n])
  n = n + 1
end
if KEYS[n] then
  index(KEYS[n], ARGV[4], ARGV[5], ARGV[6], ARGV[7] ~= '' and {ARGV[7]} or {})
end
return 1
"""
)

# KEYS: session key, [user index]. ARGV: changed (object of JSON texts), deleted (array),
# ttl ms, now (s), user or '', member, now ms. Returns the record's absolute deadline (s),
# 0 when the record is gone.
UPDATE = (
    INDEX_FUNCTION
    + """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local rec = cjson.decode(raw)
if tonumber(rec.expires) <= tonumber(ARGV[4]) then return 0 end
for k, v in pairs(cjson.decode(ARGV[1])) do rec.data[k] = v end
for _, k in ipairs(cjson.decode(ARGV[2])) do rec.data[k] = nil end
if ARGV[5] ~= '' then rec.user = ARGV[5] end
redis.call('SET', KEYS[1], cjson.encode(rec), 'PX', ARGV[3])
if KEYS[2] then index(KEYS[2], ARGV[6], tonumber(rec.expires) * 1000, ARGV[7], {}) end
return tonumber(rec.expires)
"""
)

# KEYS: user index. ARGV: member to add or '', its expires ms, now ms, members to drop...
INDEX = (
    INDEX_FUNCTION
    + """
index(KEYS[1], ARGV[1], ARGV[2], ARGV[3], {unpack(ARGV, 4)})
return 1
"""
)

# KEYS: a session key. Its record and its remaining idle time (ms), in one command.
PEEK = """
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
"""

# KEYS: attempt counters. ARGV: now, window (seconds), limit, attempt id. Counts the attempt
# against every key, or, when one is full, against none and returns the seconds until all
# have room ('0': counted).
RESERVE = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wait = nil
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local n = redis.call('ZCARD', key)
  if n >= limit then
    local oldest = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
    wait = math.max(wait or 0, tonumber(oldest[2]) + window - now, 0.001)
  end
end
if wait then return tostring(wait) end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('EXPIRE', key, window)
end
return '0'
"""

# KEYS: counters to give the attempt back to, then counters to forget. ARGV: attempt id,
# how many keys are of the first kind.
GIVE_BACK = """
local n = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  if i <= n then redis.call('ZREM', key, ARGV[1]) else redis.call('DEL', key) end
end
return 1
"""
