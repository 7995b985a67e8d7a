-- A relay joins the cluster: checks (or, as the first, sets) the key-check value, enters the
-- relay table with its link address, and starts its liveness.
-- ARGV: relay id, link address, key-check value (hex), liveness TTL (ms).
-- Reply: {'ok'}, or {'keycheck'} when the cluster's key-check value is another key's.
local rid, addr, check, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local kc = redis.call('GET', KEYCHECK)
if not kc then
  redis.call('SET', KEYCHECK, check)
elseif kc ~= check then
  return {'keycheck'}
end
redis.call('HSET', RELAYS, rid, addr)
redis.call('SET', alive_key(rid), '1', 'PX', ttl)
return {'ok'}
