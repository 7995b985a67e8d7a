-- A relay says it is alive: its liveness key gets a fresh TTL, its inbox a longer one.
-- ARGV: relay id, liveness TTL (ms), key-check value (hex).
-- Reply: {'ok'}; {'gone'} when the relay is not in the table (Redis lost its data, or the
-- relay was swept as dead while it could not reach Redis): it must register again;
-- {'keycheck'} when the cluster now has another key-check value.
local rid, ttl, check = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HEXISTS', RELAYS, rid) == 0 then return {'gone'} end
local kc = redis.call('GET', KEYCHECK)
if not kc then return {'gone'} end
if kc ~= check then return {'keycheck'} end
redis.call('SET', alive_key(rid), '1', 'PX', ttl)
redis.call('PEXPIRE', inbox_key(rid), INBOX_TTL_MS)
return {'ok'}
