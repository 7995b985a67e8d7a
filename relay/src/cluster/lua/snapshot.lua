-- The room as relay `rid` should see it: the other hosts and the announced members of the
-- other relays (see `view`), read at one instant.
-- ARGV: room id, relay id.
-- Reply: {'ok', view...}.
return reply('ok', view(ARGV[1], ARGV[2]))
