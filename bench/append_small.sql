-- fleetlm append of a ~100-byte user text message to a random one of
-- :nsessions sessions (bench-1 .. bench-N, user user-<i>, agent agent-<i>).
--   pgbench -n -M prepared -D nsessions=1000 -f bench/append_small.sql
\set i random(1, :nsessions)
SELECT fleetlm.append('bench-' || :i, 'user-' || :i, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}');
