-- A member muted or unmuted itself: on a change, the other relays hosting the room hear
-- MUTED or UNMUTED (once it is announced; ADD carries the state before that).
-- ARGV: room id, relay id, sid, '1' (muted) or '0'.
-- Reply: {'ok'}, or {'absent'}.
local room, rid, sid, muted = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rk = room_key(room)
local v = redis.call('HGET', rk, 'm:' .. sid)
if not v or member_rid(v) ~= rid then return {'absent'} end
if member_muted(v) == muted then return {'ok'} end
redis.call('HSET', rk, 'm:' .. sid,
  member_value(rid, muted, member_announced(v), member_tag(v), member_record(v)))
if member_announced(v) == '1' then
  publish(room, rid, {'t', muted == '1' and 'MUTED' or 'UNMUTED', 'sid', sid})
end
return {'ok'}
