"""The Redis layout of a room and the Lua scripts that keep it consistent.

Keys of room R (prefix P, default ``rc``), all with the hash tag ``{R}`` so
they live in one cluster slot and one script may touch them all:

==================  ======  =====================================================
``P:{R}:meta``      hash    ``e``: the epoch, ``o``: the last offset
``P:{R}:log``       stream  the history: entry id ``<offset>-0``, field ``p``
                            (the payload), capped at ``history_size`` entries
``P:{R}:pres``      hash    presence: conn id -> JSON entry
``P:{R}:pexp``      zset    presence: conn id -> expiry (Redis server time)
``P:{R}:ch``        channel live events (PUBLISH, or SPUBLISH when sharded)
``P:{R}:idem:N:OK`` string  an idempotency key's position, ``<epoch> <offset>``;
                            ``N`` is the byte length of the owner ``O`` (a user
                            id), ``K`` the key; expires after the window
==================  ======  =====================================================

Every key gets an idle TTL (``room_ttl``), refreshed by publishes and, while
any process subscribes to the room, by that process's maintenance timer.

A payload is ``<ts> <len(sender)> <sender><data>``: the event's time, its
sender and its JSON data as raw bytes, so no worker re-encodes the data. A
live message on the channel is ``<epoch> <offset> <payload>``; a notice
(join, leave) is ``!`` followed by its JSON (an epoch never starts with ``!``).

Each script first makes sure the room has an epoch: when ``meta`` is missing
(new room, expired, or Redis restarted empty) it takes the caller's fresh
candidate epoch and starts at offset 0, dropping any stale log. That is how a
lost history shows up as a new epoch.
"""

from __future__ import annotations

__all__ = [
    "DUPLICATE",
    "HISTORY",
    "MAINTAIN",
    "NOTICE",
    "PRESENCE_ADD",
    "PRESENCE_LIST",
    "PUBLISH",
    "RECOVER",
]

_ENSURE_EPOCH = """
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('DEL', KEYS[2])
end
"""

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# An idempotency key seen before (KEYS: meta, log, idem): return, and publish
# nothing, {epoch, offset, 1, payload} at the position it holds; payload is the
# stream's entry there if it is still retained in that epoch, else false (nil).
_SEEN = """
local seen = redis.call('GET', KEYS[3])
if seen then
  local space = string.find(seen, ' ', 1, true)
  local at_epoch = string.sub(seen, 1, space - 1)
  local at = tonumber(string.sub(seen, space + 1))
  local original = false
  if redis.call('HGET', KEYS[1], 'e') == at_epoch then
    local entry = redis.call('XRANGE', KEYS[2], at .. '-0', at .. '-0')
    if #entry == 1 then original = entry[1][2][2] end
  end
  return {at_epoch, at, 1, original}
end
"""

# KEYS: meta, log, and (a keyed publish) idem. ARGV: candidate epoch, payload,
# history size, room ttl, channel, 'PUBLISH' or 'SPUBLISH', and (keyed) the
# window in milliseconds. Returns {epoch, offset}; for a key seen within the
# window, what _SEEN returns, and nothing is published, appended or renewed.
PUBLISH = (
    "if KEYS[3] then\n"
    + _SEEN
    + "end\n"
    + _ENSURE_EPOCH
    + """
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], offset .. '-0', 'p', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call(ARGV[6], ARGV[5], epoch .. ' ' .. offset .. ' ' .. ARGV[2])
if KEYS[3] then
  redis.call('SET', KEYS[3], epoch .. ' ' .. offset, 'PX', ARGV[7])
end
return {epoch, offset}
"""
)

# KEYS: meta, log, idem. What PUBLISH would answer for a key seen within the
# window ({epoch, offset, 1, payload or nil}), or nil; changes nothing.
DUPLICATE = _SEEN + "return false\n"

# KEYS: meta (only so a cluster client routes the call to the room's shard).
# ARGV: 'PUBLISH' or 'SPUBLISH', channel, message.
NOTICE = """
return redis.call(ARGV[1], ARGV[2], ARGV[3])
"""

# KEYS: meta, log. ARGV: candidate epoch, room ttl, since epoch ('' for none),
# since offset, then for a process's own resync (else ''): '1', and the time
# (``%r`` of the event's ts, or '') of the event at ``since`` as that process
# delivered it. Returns {epoch, offset, recovered (0/1), entries}.
#
# The continuity check, for a resync only: the room's positions went backwards
# when this copy of the room is behind what the process delivered (``since``
# past the last offset: a failover to a replica that had not received the
# latest publishes, or a restore from an older snapshot), or when the entry at
# ``since`` is another event than the one delivered there (the same, after new
# publishes reused those offsets). Then the room gets a new epoch (the
# candidate) and keeps its stream and offsets: every position given out before
# is void, so each subscriber, live or resuming, gets a reset instead of a
# silent gap. A client's resume never changes the epoch (a made-up ``since``
# must not reset a room for everyone): its ``since`` past the end is answered
# not recovered.
RECOVER = (
    _ENSURE_EPOCH
    + """
redis.call('EXPIRE', KEYS[1], ARGV[2])
local offset = tonumber(redis.call('HGET', KEYS[1], 'o'))
if ARGV[3] ~= epoch then return {epoch, offset, 0, {}} end
local since = tonumber(ARGV[4])
local broken = since > offset
if not broken and ARGV[6] ~= '' and since >= 1 then
  local at = redis.call('XRANGE', KEYS[2], since .. '-0', since .. '-0')
  if #at == 1 and string.sub(at[1][2][2], 1, #ARGV[6] + 1) ~= ARGV[6] .. ' ' then
    broken = true
  end
end
if broken then
  if ARGV[5] == '1' then
    epoch = ARGV[1]
    redis.call('HSET', KEYS[1], 'e', epoch)
  end
  return {epoch, offset, 0, {}}
end
if since == offset then return {epoch, offset, 1, {}} end
local first = (since + 1) .. '-0'
local entries = redis.call('XRANGE', KEYS[2], first, '+')
if #entries == 0 or entries[1][1] ~= first then return {epoch, offset, 0, {}} end
return {epoch, offset, 1, entries}
"""
)

# KEYS: meta, log. ARGV: candidate epoch, room ttl, before ('' for latest),
# limit. Returns {epoch, offset, entries newest first, more (0/1)}.
HISTORY = (
    _ENSURE_EPOCH
    + """
redis.call('EXPIRE', KEYS[1], ARGV[2])
local offset = tonumber(redis.call('HGET', KEYS[1], 'o'))
local hi = offset
if ARGV[3] ~= '' then hi = math.min(tonumber(ARGV[3]) - 1, offset) end
if hi < 1 then return {epoch, offset, {}, 0} end
local entries = redis.call('XREVRANGE', KEYS[2], hi .. '-0', '-', 'COUNT', ARGV[4])
local more = 0
if #entries > 0 then
  local oldest = tonumber(string.match(entries[#entries][1], '^(%d+)'))
  if oldest > 1 then
    local older = redis.call('XREVRANGE', KEYS[2], (oldest - 1) .. '-0', '-', 'COUNT', 1)
    if #older > 0 then more = 1 end
  end
end
return {epoch, offset, entries, more}
"""
)

# KEYS: pres, pexp. ARGV: presence ttl, room ttl, conn, entry JSON.
PRESENCE_ADD = (
    _NOW
    + """
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""
)

# KEYS: pres, pexp. Returns the JSON entries that have not expired.
PRESENCE_LIST = (
    _NOW
    + """
local live = redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')
if #live == 0 then return {} end
local entries = redis.call('HMGET', KEYS[1], unpack(live))
local out = {}
for i = 1, #entries do if entries[i] then out[#out + 1] = entries[i] end end
return out
"""
)

# One room's upkeep, run by every process that has subscribers in it.
# KEYS: meta, log, pres, pexp. ARGV: presence ttl, room ttl, then pairs of
# (conn, entry JSON) this process owns. Re-asserts those entries (so they
# come back after Redis lost them), keeps the room's keys from expiring,
# and removes entries whose owner stopped refreshing them: those are
# returned, each exactly once across all processes, for a leave notice.
MAINTAIN = (
    _NOW
    + """
local ttl = tonumber(ARGV[1])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[4], now + ttl, ARGV[i])
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. now)
local left = {}
for i = 1, #gone do
  local entry = redis.call('HGET', KEYS[3], gone[i])
  redis.call('HDEL', KEYS[3], gone[i])
  redis.call('ZREM', KEYS[4], gone[i])
  if entry then left[#left + 1] = entry end
end
for i = 1, 4 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[2]) end
end
return left
"""
)
