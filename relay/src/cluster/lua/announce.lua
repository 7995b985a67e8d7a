-- A joined member registered its UDP address: its sealed record is stored and the other
-- relays hosting the room hear ADD.
-- ARGV: room id, relay id, sid, sealed record.
-- Reply: {'ok'}, or {'absent'} when the member is not (or no longer) this relay's.
local room, rid, sid, record = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rk = room_key(room)
local v = redis.call('HGET', rk, 'm:' .. sid)
if not v or member_rid(v) ~= rid then return {'absent'} end
v = member_value(rid, member_muted(v), '1', member_tag(v), record)
redis.call('HSET', rk, 'm:' .. sid, v)
publish(room, rid, add_fields(room, rid, sid, v))
return {'ok'}
