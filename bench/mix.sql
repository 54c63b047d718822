-- FleetLM's "rest read write mix": 80 % appends of the ~100-byte message,
-- 20 % reads of the last 50 messages of the session (one round trip:
-- after_seq comes from fleetlm.last_seq in the same statement).
--   pgbench -n -M prepared -D nsessions=1000 -f bench/mix.sql
\set i random(1, :nsessions)
\set r random(1, 100)
\if :r <= 80
SELECT fleetlm.append('bench-' || :i, 'user-' || :i, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}');
\else
SELECT * FROM fleetlm.messages('bench-' || :i, greatest(fleetlm.last_seq('bench-' || :i) - 50, 0), 50);
\endif
