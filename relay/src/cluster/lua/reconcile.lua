-- Re-registration of one room: makes what Redis holds of relay `rid`'s members in `room`
-- what the relay has, after Redis lost its data, swept the relay while it was cut off, or
-- missed its changes during an outage. Members Redis has and the relay does not are removed
-- (DEL); members the relay has and Redis does not are put back (ADD once announced); changes
-- of mute state or record are published. A member that no longer fits (its SID or name
-- taken meanwhile through another relay, the room full, or the room now under another
-- password) is evicted: the relay must end it.
-- ARGV: room id, relay id, owner core, password verifier, most members, then for each of
-- the relay's members: sid, name tag, muted ('0'/'1'), announced ('0'/'1'), sealed record.
-- Reply: {'ok', evicted sid...}, or {'gone'} when the relay is not registered.
local room, rid, core, verifier, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if redis.call('HEXISTS', RELAYS, rid) == 0 then return {'gone'} end
local rk = room_key(room)
local wanted, order, evicted = {}, {}, {}
for i = 6, #ARGV, 5 do
  wanted[ARGV[i]] = {tag = ARGV[i + 1], muted = ARGV[i + 2], announced = ARGV[i + 3],
    record = ARGV[i + 4]}
  table.insert(order, ARGV[i])
end
local count = tonumber(redis.call('HGET', rk, 'count') or '0')
if count <= 0 then
  redis.call('DEL', rk, hosts_key(room))
  if #order > 0 then redis.call('HSET', rk, 'pw', verifier, 'count', 0) end
elseif redis.call('HGET', rk, 'pw') ~= verifier then
  evicted, wanted, order = order, {}, {}
end
for sid, v in pairs(members_of(room, rid)) do
  local w = wanted[sid]
  if w == nil or w.tag ~= member_tag(v) then
    remove_member(room, sid, v)
  end
end
for _, sid in ipairs(order) do
  local w = wanted[sid]
  local v = redis.call('HGET', rk, 'm:' .. sid)
  local nv = member_value(rid, w.muted, w.announced, w.tag, w.record)
  if v and member_rid(v) == rid then
    if v ~= nv then
      redis.call('HSET', rk, 'm:' .. sid, nv)
      if w.announced == '1' then
        if member_announced(v) ~= '1' or member_record(v) ~= w.record then
          publish(room, rid, add_fields(room, rid, sid, nv))
        elseif member_muted(v) ~= w.muted then
          publish(room, rid, {'t', w.muted == '1' and 'MUTED' or 'UNMUTED', 'sid', sid})
        end
      end
    end
  elseif v or redis.call('HEXISTS', rk, 'n:' .. w.tag) == 1
      or tonumber(redis.call('HGET', rk, 'count') or '0') >= max then
    table.insert(evicted, sid)
  else
    redis.call('HSET', rk, 'm:' .. sid, nv, 'n:' .. w.tag, sid)
    redis.call('HINCRBY', rk, 'count', 1)
    host(room, rid, core)
    if w.announced == '1' then publish(room, rid, add_fields(room, rid, sid, nv)) end
  end
end
return reply('ok', evicted)
