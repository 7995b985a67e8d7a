-- A member asks to join a room through relay `rid`: the cluster-wide rules, atomically.
-- ARGV: room id, relay id, the room's owner core on that relay (its SID lane), lanes (the
-- relay's cores), most members, name tag, password verifier (hex), '1' when the relay wants
-- the room's view even if it hosts the room already (it has no room of that name yet: two of
-- its joins were asked at once, and whichever answer it applies first must carry the view).
-- The first member of an empty room sets its password verifier; every later one must bring
-- the same (checked first, so a stranger learns nothing about who is inside); the name tag
-- must be free in the room; the members on every relay together stay within the limit; the
-- SID is the next free one (round robin) in the relay core's lane, never 255.
-- Reply: {'ok', sid} or, when the relay was not hosting the room yet or wants the view,
-- {'ok', sid, view...}
-- (see `view`); or {'wrong_password'}, {'name_taken'}, {'room_full'}; {'gone'} when the
-- relay is not registered.
local room, rid, core, lanes, max, tag, verifier, want_view =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7],
  ARGV[8] == '1'
if redis.call('HEXISTS', RELAYS, rid) == 0 then return {'gone'} end
local rk = room_key(room)
local count = tonumber(redis.call('HGET', rk, 'count') or '0')
if count <= 0 then
  redis.call('DEL', rk, hosts_key(room))
  redis.call('HSET', rk, 'pw', verifier, 'count', 0)
  count = 0
elseif redis.call('HGET', rk, 'pw') ~= verifier then
  return {'wrong_password'}
end
if redis.call('HEXISTS', rk, 'n:' .. tag) == 1 then return {'name_taken'} end
if count >= max then return {'room_full'} end
local start = tonumber(redis.call('HGET', rk, 'next') or '0')
local sid = nil
for i = 0, 254 do
  local s = (start + i) % 255
  if s % lanes == core and redis.call('HEXISTS', rk, 'm:' .. s) == 0 then
    sid = s
    break
  end
end
if sid == nil then return {'room_full'} end
redis.call('HSET', rk, 'next', (sid + 1) % 255,
  'm:' .. sid, member_value(rid, '0', '0', tag, ''), 'n:' .. tag, sid)
redis.call('HINCRBY', rk, 'count', 1)
local new_host = redis.call('HGET', rk, 'c:' .. rid) == false
host(room, rid, core)
if new_host or want_view then
  local rest = view(room, rid)
  table.insert(rest, 1, sid)
  return reply('ok', rest)
end
return {'ok', sid}
