"""The Lua scripts of a room shared by several relay processes (``valkey.order``).

Valkey runs each script atomically, so it is the single point of order for a room,
as the Durable Object was: a post takes the next id there, a join checks and sets
the verifier there, and presence and the clear cooldown are counted there. Every
script that changes what members see publishes one event on the room's channel,
numbered by the room's event counter (``ev``): each process delivers the events in
that order and notices a gap (see ``valkey.room``).

An event is ``<ev>\\n<kind>\\n<body>``: ``m`` a message (the body is the envelope
as relayed, built here around the id and the time Valkey assigned), ``j`` a join
(connection, first of its clientId, participants), ``l`` a clientId's last
connection left (clientId, participants), ``c`` a clear (clientId, participants),
``s`` a signal (the sender's connection, the envelope as relayed).

A connection is ``<process>/<n>/<clientId>``. A room's presence is a sorted set of
connections scored by the time they joined; one is live while its process is: each
process refreshes its own score in the processes set (``HEARTBEAT``), and an entry
whose process has expired is pruned, and its ``left`` published, by whichever
script looks first. The time is Valkey's own (``TIME``): one clock for every room.
"""

from typing import Final

# Every script starts with this. ARGV[1..3] are the retention of every state change:
# confirmed_ms, unconfirmed_ms, tombstone_ms (-1: kept for ever).
_PRELUDE: Final = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function client_of(conn)
  return string.match(conn, '[^/]*$')
end

-- The distinct clientIds present, in the order they joined, comma-separated.
local function participants(presence)
  local seen, out = {}, {}
  for _, conn in ipairs(redis.call('ZRANGE', presence, 0, -1)) do
    local cid = client_of(conn)
    if not seen[cid] then
      seen[cid] = true
      out[#out + 1] = cid
    end
  end
  return table.concat(out, ',')
end

local function present(presence, cid)
  for _, conn in ipairs(redis.call('ZRANGE', presence, 0, -1)) do
    if client_of(conn) == cid then
      return true
    end
  end
  return false
end

local function publish(meta, channel, kind, body)
  local ev = redis.call('HINCRBY', meta, 'ev', 1)
  redis.call('PUBLISH', channel, ev .. '\\n' .. kind .. '\\n' .. body)
  return ev
end

-- Drop the connections of processes that stopped heartbeating; publish who left.
local function prune(meta, presence, processes, channel, now)
  local live, gone = {}, {}
  for _, conn in ipairs(redis.call('ZRANGE', presence, 0, -1)) do
    local process = string.match(conn, '^[^/]*')
    if live[process] == nil then
      local until_ms = redis.call('ZSCORE', processes, process)
      live[process] = until_ms ~= false and tonumber(until_ms) > now
    end
    if not live[process] then
      redis.call('ZREM', presence, conn)
      gone[#gone + 1] = client_of(conn)
    end
  end
  local told = {}
  for _, cid in ipairs(gone) do
    if not told[cid] and not present(presence, cid) then
      told[cid] = true
      publish(meta, channel, 'l', cid .. '\\n' .. participants(presence))
    end
  end
  return #gone
end

-- Retention is key expiry, refreshed by every change: a confirmed room's history
-- goes after confirmed_ms and its verifier (the tombstone) tombstone_ms later.
local function retain(meta, hist, presence)
  local kept = tonumber(ARGV[2])
  local tomb = kept
  if redis.call('HEXISTS', meta, 'confirmed_at') == 1 then
    kept = tonumber(ARGV[1])
    tomb = kept
    if kept >= 0 then
      tomb = kept + tonumber(ARGV[3])
    end
  end
  for _, pair in ipairs({{meta, tomb}, {hist, kept}, {presence, tomb}}) do
    if pair[2] < 0 then
      redis.call('PERSIST', pair[1])
    else
      redis.call('PEXPIRE', pair[1], pair[2])
    end
  end
end

local function size_of(text, overhead)
  local m = cjson.decode(text)
  return #m.iv + #m.ciphertext + #m['from'] + overhead
end
"""

# KEYS: meta, history, presence, processes, the process's rooms, quota, channel.
# ARGV 4..: connection, clientId, verifier, max connections, the room's own bytes,
# room id. Returns {"bad_token"}, {"full"} or {"ok", ev, participants, history}.
JOIN: Final = (
    _PRELUDE
    + """
local meta, hist, presence, processes, rooms, quota, channel =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local conn, cid, verifier = ARGV[4], ARGV[5], ARGV[6]
local now = now_ms()
local known = redis.call('HGET', meta, 'verifier')
if known and known ~= verifier then
  return {'bad_token'}  -- before capacity: a stranger learns nothing of the room
end
prune(meta, presence, processes, channel, now)
if redis.call('ZCARD', presence) >= tonumber(ARGV[7]) then
  return {'full'}
end
if not known then  -- trust on first use, set only if absent
  redis.call('HSET', meta, 'verifier', verifier, 'creator', cid)
  redis.call('HSETNX', meta, 'last_id', 0)
  redis.call('HINCRBY', quota, 'rooms', 1)
  redis.call('HINCRBY', quota, 'bytes', tonumber(ARGV[8]))
end
local first = not present(presence, cid)
redis.call('ZADD', presence, now, conn)
local creator = redis.call('HGET', meta, 'creator')
if creator and creator ~= cid then  -- a second clientId: the room is in use
  redis.call('HSET', meta, 'confirmed_at', now)
  redis.call('HDEL', meta, 'creator')
end
redis.call('SADD', rooms, ARGV[9])
redis.call('HSET', meta, 'last_active', now)
local people = participants(presence)
local ev = publish(meta, channel, 'j', conn .. '\\n' .. (first and '1' or '0') .. '\\n' .. people)
retain(meta, hist, presence)
return {'ok', ev, people, redis.call('LRANGE', hist, 0, -1)}
"""
)

# KEYS: meta, presence, channel. ARGV 4..: connection. Returns 1 if it was present.
LEAVE: Final = (
    _PRELUDE
    + """
local meta, presence, channel = KEYS[1], KEYS[2], KEYS[3]
local conn = ARGV[4]
if redis.call('ZREM', presence, conn) == 0 then
  return 0
end
local cid = client_of(conn)
if not present(presence, cid) then
  publish(meta, channel, 'l', cid .. '\\n' .. participants(presence))
end
return 1
"""
)

# KEYS: meta, history, presence, quota, channel. ARGV 4..: the history cap, the
# stored bytes allowed in all, a message's overhead bytes, then per message its
# sender, IV, ciphertext and stored bytes. Returns each message's id (0: refused,
# storage is full).
POST: Final = (
    _PRELUDE
    + """
local meta, hist, presence, quota, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local cap, allowed, overhead = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local bytes = 0  -- the stored bytes of the history; 0 once its key has expired
if redis.call('EXISTS', hist) == 1 then
  bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
end
local total = tonumber(redis.call('HGET', quota, 'bytes') or '0')
local grown = 0
local last = tonumber(redis.call('HGET', meta, 'last_id') or '0')
local ids = {}
local i = 7
while i <= #ARGV do
  local sender, iv, ciphertext, size = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local freed = 0  -- a full history makes room by its oldest message
  local n = redis.call('LLEN', hist)
  if cap > 0 and n >= cap then
    freed = size_of(redis.call('LINDEX', hist, 0), overhead)
  end
  if cap > 0 and total + grown - freed + size > allowed then
    ids[#ids + 1] = 0
  else
    last = last + 1
    local text = '{"type":"message","id":' .. last .. ',"from":"' .. sender .. '","sentAt":'
      .. now .. ',"iv":"' .. iv .. '","ciphertext":"' .. ciphertext .. '"}'
    if cap > 0 then
      redis.call('RPUSH', hist, text)
      bytes, grown = bytes + size, grown + size
      while redis.call('LLEN', hist) > cap do
        local dropped = size_of(redis.call('LPOP', hist), overhead)
        bytes, grown = bytes - dropped, grown - dropped
      end
    end
    publish(meta, channel, 'm', text)
    ids[#ids + 1] = last
  end
  i = i + 4
end
redis.call('HSET', meta, 'last_id', last, 'bytes', bytes, 'last_active', now)
redis.call('HINCRBY', quota, 'bytes', grown)
retain(meta, hist, presence)
return ids
"""
)

# KEYS: meta, history, presence, quota, channel. ARGV 4..: clientId, cooldown ms.
# Returns 1, or 0 if the room was cleared less than the cooldown ago.
CLEAR: Final = (
    _PRELUDE
    + """
local meta, hist, presence, quota, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = now_ms()
if now - tonumber(redis.call('HGET', meta, 'last_clear') or '0') < tonumber(ARGV[5]) then
  return 0
end
local bytes = 0
if redis.call('EXISTS', hist) == 1 then
  bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
end
redis.call('DEL', hist)
redis.call('HSET', meta, 'bytes', 0, 'last_clear', now, 'last_active', now)
if bytes > 0 then
  redis.call('HINCRBY', quota, 'bytes', 0 - bytes)
end
publish(meta, channel, 'c', ARGV[4] .. '\\n' .. participants(presence))
retain(meta, hist, presence)
return 1
"""
)

# KEYS: meta, channel. ARGV 4..: the sender's connection, the envelope as relayed.
# A signal is never stored: only numbered and published.
SIGNAL: Final = (
    _PRELUDE
    + """
return publish(KEYS[1], KEYS[2], 's', ARGV[4] .. '\\n' .. ARGV[5])
"""
)

# KEYS: meta, presence, processes, channel. Prunes the connections of dead processes.
PRUNE: Final = (
    _PRELUDE
    + """
return prune(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now_ms())
"""
)

# KEYS: processes, quota. ARGV 4..: this process, its lifetime ms, 1 if it has
# heartbeaten before. Returns {1 if it had been given up for dead, stored bytes,
# stored rooms, then the processes found dead, each now removed: the caller prunes
# their rooms}.
HEARTBEAT: Final = (
    _PRELUDE
    + """
local processes, quota = KEYS[1], KEYS[2]
local me = ARGV[4]
local now = now_ms()
local until_ms = redis.call('ZSCORE', processes, me)
local lost = ARGV[6] == '1' and (until_ms == false or tonumber(until_ms) <= now)
redis.call('ZADD', processes, now + tonumber(ARGV[5]), me)
local dead = redis.call('ZRANGEBYSCORE', processes, '-inf', now)
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', processes, '-inf', now)
end
local counts = redis.call('HMGET', quota, 'bytes', 'rooms')
local reply = {lost and 1 or 0, tonumber(counts[1] or '0'), tonumber(counts[2] or '0')}
for _, process in ipairs(dead) do
  reply[#reply + 1] = process
end
return reply
"""
)
