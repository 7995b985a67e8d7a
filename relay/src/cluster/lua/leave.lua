-- A member left: removed, and the other relays hosting the room hear DEL if it was announced.
-- ARGV: room id, relay id, sid.
-- Reply: {'ok'}, or {'absent'} when the member is not (or no longer) this relay's.
local room, rid, sid = ARGV[1], ARGV[2], ARGV[3]
local v = redis.call('HGET', room_key(room), 'm:' .. sid)
if not v or member_rid(v) ~= rid then return {'absent'} end
remove_member(room, sid, v)
return {'ok'}
