-- append_small spread over many sessions: fleetlm append of the same
-- ~100-byte user text message to a random one of :nmany sessions
-- (many-1 .. many-N, user user-m<i>, agent agent-m<i>; 100,000 by default,
-- far more than fleetlm.max_active_sessions).
--   pgbench -n -M prepared -D nmany=100000 -f bench/append_100k.sql
\set i random(1, :nmany)
SELECT fleetlm.append('many-' || :i, 'user-m' || :i, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}');
