-- Every relay runs this twice a second: a relay of the table whose liveness key has expired
-- is dead (SIGKILL, crash, partition), and everything it had is removed, with DEL to the
-- rooms' other hosts. Two relays sweeping at once is safe: the second finds nothing.
-- ARGV: the sweeping relay's id (never swept here: its own heartbeat finds out).
-- Reply: {swept relay ids, {live relay id, link address, ...}}.
local me = ARGV[1]
local swept, live = {}, {}
local table_ = redis.call('HGETALL', RELAYS)
for i = 1, #table_, 2 do
  local rid, addr = table_[i], table_[i + 1]
  if rid ~= me and redis.call('EXISTS', alive_key(rid)) == 0 then
    forget_relay(rid)
    table.insert(swept, rid)
  else
    table.insert(live, rid)
    table.insert(live, addr)
  end
end
return {swept, live}
