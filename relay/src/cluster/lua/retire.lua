-- A relay stops cleanly: everything it had goes at once, as the sweep would remove it.
-- ARGV: relay id. Reply: {'ok'}.
forget_relay(ARGV[1])
return {'ok'}
