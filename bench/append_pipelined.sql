-- FleetLM's own benchmark shape: each client keeps 5 appends in flight
-- (run it with 30 clients: 30 virtual users x 5).  One pgbench
-- transaction = one pipeline = 5 messages.
--   pgbench -n -M prepared -c 30 -D nsessions=1000 -f bench/append_pipelined.sql
\set i random(1, :nsessions)
\startpipeline
SELECT fleetlm.append('bench-' || :i, 'user-' || :i, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}');
SELECT fleetlm.append('bench-' || :i, 'user-' || :i, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}');
SELECT fleetlm.append('bench-' || :i, 'user-' || :i, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}');
SELECT fleetlm.append('bench-' || :i, 'user-' || :i, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}');
SELECT fleetlm.append('bench-' || :i, 'user-' || :i, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}');
\endpipeline
