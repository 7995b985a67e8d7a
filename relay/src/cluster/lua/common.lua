-- Shared by every script of the cluster (relay/src/cluster/scripts.rs puts it in front of
-- each). The data model is docs/cluster.md's "Redis data model"; keep the two in step.
--
-- The scripts compute the names of the keys they touch (the inboxes of the relays hosting a
-- room are only known inside), so they need one Redis primary (standalone, or Sentinel for
-- high availability), not Redis Cluster.

local P = 'moose:'
local RELAYS = P .. 'relays'
local KEYCHECK = P .. 'keycheck'
-- Events kept per inbox (approximate trim): a relay reads its inbox as events arrive; this
-- only bounds one whose reader stalls.
local INBOX_MAX = 10000
-- An inbox outlives its relay's heartbeats by this much, then goes with its relay.
local INBOX_TTL_MS = 60000

local function room_key(room) return P .. 'room:' .. room end
local function hosts_key(room) return P .. 'room:' .. room .. ':relays' end
local function inbox_key(rid) return P .. 'inbox:' .. rid end
local function rooms_of(rid) return P .. 'relay:' .. rid .. ':rooms' end
local function alive_key(rid) return P .. 'alive:' .. rid end

-- A member's value: relay id (16 hex) | muted (1: '0'/'1') | announced (1: '0'/'1') |
-- name tag (16 hex) | sealed record (the rest; empty until announced).
local function member_rid(v) return string.sub(v, 1, 16) end
local function member_muted(v) return string.sub(v, 17, 17) end
local function member_announced(v) return string.sub(v, 18, 18) end
local function member_tag(v) return string.sub(v, 19, 34) end
local function member_record(v) return string.sub(v, 35) end
local function member_value(rid, muted, announced, tag, record)
  return rid .. muted .. announced .. tag .. record
end

-- Appends one event to the inbox of every relay hosting `room` but `from`; `fields` are the
-- event's own fields (t, sid, ...). Returns how many inboxes got it.
local function publish(room, from, fields)
  local hosts = redis.call('HGETALL', hosts_key(room))
  local sent = 0
  for i = 1, #hosts, 2 do
    local rid, core = hosts[i], hosts[i + 1]
    if rid ~= from then
      redis.call('XADD', inbox_key(rid), 'MAXLEN', '~', INBOX_MAX, '*',
        'room', room, 'core', core, 'from', from, unpack(fields))
      sent = sent + 1
    end
  end
  return sent
end

-- The ADD event of an announced member's value. It carries the member's relay's link address
-- (`la`), so that a relay hearing of a relay that registered since its last sweep takes its
-- link datagrams at once instead of after that sweep.
local function add_fields(room, rid, sid, v)
  local oc = redis.call('HGET', hosts_key(room), rid) or '0'
  local la = redis.call('HGET', RELAYS, rid) or ''
  return {'t', 'ADD', 'sid', sid, 'oc', oc, 'muted', member_muted(v), 'rec', member_record(v),
    'la', la}
end

-- Makes `rid` a host of `room` (its owner core there is `core`) if it is not one yet.
local function host(room, rid, core)
  if redis.call('HINCRBY', room_key(room), 'c:' .. rid, 1) == 1 then
    redis.call('HSET', hosts_key(room), rid, core)
    redis.call('SADD', rooms_of(rid), room)
  end
end

-- Removes member `sid` (value `v`) from `room`: the others hear DEL if it was announced; the
-- member's relay stops hosting the room with its last member, and the room goes with its
-- last member. Does nothing if the member is gone already.
local function remove_member(room, sid, v)
  local rk = room_key(room)
  if redis.call('HDEL', rk, 'm:' .. sid) == 0 then return end
  local rid = member_rid(v)
  redis.call('HDEL', rk, 'n:' .. member_tag(v))
  if member_announced(v) == '1' then publish(room, rid, {'t', 'DEL', 'sid', sid}) end
  if redis.call('HINCRBY', rk, 'c:' .. rid, -1) <= 0 then
    redis.call('HDEL', rk, 'c:' .. rid)
    redis.call('HDEL', hosts_key(room), rid)
    redis.call('SREM', rooms_of(rid), room)
  end
  if redis.call('HINCRBY', rk, 'count', -1) <= 0 then
    redis.call('DEL', rk, hosts_key(room))
  end
end

-- Every member of `rid` in `room` (fields and values), read before any is removed.
local function members_of(room, rid)
  local out = {}
  local fields = redis.call('HGETALL', room_key(room))
  for i = 1, #fields, 2 do
    local f, v = fields[i], fields[i + 1]
    if string.sub(f, 1, 2) == 'm:' and member_rid(v) == rid then
      out[string.sub(f, 3)] = v
    end
  end
  return out
end

-- Removes relay `rid` and everything it had: its members (DEL to the rooms' other hosts),
-- its rooms list, its inbox, its liveness and its entry in the relay table.
local function forget_relay(rid)
  for _, room in ipairs(redis.call('SMEMBERS', rooms_of(rid))) do
    for sid, v in pairs(members_of(room, rid)) do
      remove_member(room, sid, v)
    end
  end
  redis.call('DEL', rooms_of(rid), inbox_key(rid), alive_key(rid))
  redis.call('HDEL', RELAYS, rid)
end

-- What a relay needs to join a room's view: its hosts (relay id, core) and its announced
-- members but `rid`'s (sid, relay id, muted, sealed record), as one flat list:
-- number of hosts, host pairs..., then member quadruples to the end.
local function view(room, rid)
  local out = {}
  local hosts = redis.call('HGETALL', hosts_key(room))
  local n = 0
  for i = 1, #hosts, 2 do
    if hosts[i] ~= rid then
      table.insert(out, hosts[i])
      table.insert(out, hosts[i + 1])
      n = n + 1
    end
  end
  table.insert(out, 1, n)
  local fields = redis.call('HGETALL', room_key(room))
  for i = 1, #fields, 2 do
    local f, v = fields[i], fields[i + 1]
    if string.sub(f, 1, 2) == 'm:' and member_announced(v) == '1' and member_rid(v) ~= rid then
      table.insert(out, string.sub(f, 3))
      table.insert(out, member_rid(v))
      table.insert(out, member_muted(v))
      table.insert(out, member_record(v))
    end
  end
  return out
end

-- Prepends `status` to the list `rest`.
local function reply(status, rest)
  table.insert(rest, 1, status)
  return rest
end
