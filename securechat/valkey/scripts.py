"""The Lua scripts that read and change a room: each runs atomically inside Valkey.

A room's batch of writes (``Storage.write``) is one ``WRITE`` call, so no other
client ever sees half of it, and a second relay process cannot interleave its own.
Scripts do not roll back, so ``WRITE`` checks the whole batch before it writes
anything: an append whose id is not the room's counter plus one, or a verifier that
differs from the one already set, refuses the batch and changes nothing.

Ordering today: the room's rules number a message, and the script only confirms the
number against the counter. The next step, with several processes per room, passes
no id: the script takes ``last_id + 1`` itself and returns it, so Valkey alone owns
each room's order, as the Durable Object did, and the rules learn the id from the
reply (or from the channel) instead of choosing it.
"""

from typing import Final

# The ops of one batch, after the fixed arguments, each a tag and its values.
OP_VERIFIER: Final = "V"  # verifier, creator ("" for none): set only if absent
OP_CONFIRM: Final = "C"
OP_TOUCH: Final = "T"
OP_APPEND: Final = "A"  # id, keep, stored bytes, the message as relayed
OP_CLEAR: Final = "X"
REFUSED: Final = "SECURECHAT"  # the first word of every error the scripts raise

# KEYS: meta hash, history list, the quota hash. ARGV: now_ms, confirmed_ms, unconfirmed_ms,
# tombstone_ms (-1: kept for ever), the room's own bytes, a message's overhead
# bytes, the channel, then the ops. Returns {stored bytes grown, rooms added}.
WRITE: Final = """
local meta, hist = KEYS[1], KEYS[2]
local now, channel = ARGV[1], ARGV[7]
local overhead = tonumber(ARGV[6])
local FIRST = 8

-- 1. Check the whole batch: nothing is written unless all of it can be.
local last = tonumber(redis.call('HGET', meta, 'last_id') or '0')
local verifier = redis.call('HGET', meta, 'verifier')
local i = FIRST
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'V' then
    if verifier and verifier ~= ARGV[i + 1] then
      return redis.error_reply('SECURECHAT the room has another verifier')
    end
    i = i + 3
  elseif op == 'A' then
    last = last + 1
    if tonumber(ARGV[i + 1]) ~= last then
      return redis.error_reply('SECURECHAT the message id is not the next one')
    end
    i = i + 5
  elseif op == 'C' or op == 'T' or op == 'X' then
    i = i + 1
  else
    return redis.error_reply('SECURECHAT unknown write')
  end
end

-- 2. Apply it.
local added = 0
if redis.call('EXISTS', meta) == 0 then
  added = 1
  redis.call('HSET', meta, 'last_id', 0)
end
local bytes = 0  -- the stored bytes of the history; 0 once its key has expired
if redis.call('EXISTS', hist) == 1 then
  bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
end
local before = bytes
redis.call('HSET', meta, 'last_active', now)
local keep = nil
i = FIRST
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'V' then
    if not verifier then  -- set if absent, as SET NX
      verifier = ARGV[i + 1]
      redis.call('HSET', meta, 'verifier', verifier)
      if ARGV[i + 2] ~= '' then
        redis.call('HSET', meta, 'creator', ARGV[i + 2])
      end
    end
    i = i + 3
  elseif op == 'C' then
    redis.call('HSET', meta, 'confirmed_at', now)
    redis.call('HDEL', meta, 'creator')
    i = i + 1
  elseif op == 'T' then
    i = i + 1
  elseif op == 'A' then
    redis.call('RPUSH', hist, ARGV[i + 4])
    redis.call('HSET', meta, 'last_id', ARGV[i + 1])
    bytes = bytes + tonumber(ARGV[i + 3])
    keep = tonumber(ARGV[i + 2])
    redis.call('PUBLISH', channel, ARGV[i + 4])
    i = i + 5
  else  -- 'X'
    redis.call('DEL', hist)
    bytes, keep = 0, nil
    i = i + 1
  end
end

-- 3. The cap, once per batch: each later append keeps a suffix of what the one
-- before kept, so the last one decides.
if keep then
  local n = redis.call('LLEN', hist)
  if n > keep then
    for _, text in ipairs(redis.call('LRANGE', hist, 0, n - keep - 1)) do
      local m = cjson.decode(text)
      bytes = bytes - (#m.iv + #m.ciphertext + #m['from'] + overhead)
    end
    if keep == 0 then
      redis.call('DEL', hist)
    else
      redis.call('LTRIM', hist, n - keep, -1)
    end
  end
end
redis.call('HSET', meta, 'bytes', bytes)

-- 4. Retention is key expiry: a confirmed room's history goes after confirmed_ms
-- and its verifier (the tombstone) tombstone_ms later; an unconfirmed room goes whole.
local function expire(key, ms)
  if ms < 0 then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, ms)
  end
end
local kept, tomb = tonumber(ARGV[3]), tonumber(ARGV[3])
if redis.call('HEXISTS', meta, 'confirmed_at') == 1 then
  kept = tonumber(ARGV[2])
  tomb = kept
  if kept >= 0 then
    tomb = kept + tonumber(ARGV[4])
  end
end
expire(meta, tomb)
expire(hist, kept)
local grown = bytes - before + added * tonumber(ARGV[5])
redis.call('HINCRBY', KEYS[3], 'bytes', grown)  -- the counts of all processes together
redis.call('HINCRBY', KEYS[3], 'rooms', added)
return {grown, added}
"""

# KEYS: meta hash, history list. Returns the hash's fields and the history, read
# together so a load sees one whole batch.
LOAD: Final = """
return {
  redis.call('HMGET', KEYS[1], 'verifier', 'last_id', 'last_active', 'creator',
             'confirmed_at'),
  redis.call('LRANGE', KEYS[2], 0, -1),
}
"""
