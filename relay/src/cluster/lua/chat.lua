-- A member said something: the other relays hosting the room hear CHAT with the sealed
-- message. Nothing is stored but the events.
-- ARGV: room id, relay id, sid, sealed message.
-- Reply: {'ok'}, or {'absent'} when the member is not this relay's announced member.
local room, rid, sid, msg = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local v = redis.call('HGET', room_key(room), 'm:' .. sid)
if not v or member_rid(v) ~= rid or member_announced(v) ~= '1' then return {'absent'} end
publish(room, rid, {'t', 'CHAT', 'sid', sid, 'msg', msg})
return {'ok'}
