-- Not part of the default run (bench/run --workloads "... append_batch5"):
-- the 5 messages of append_pipelined sent as one fleetlm.append_batch, an
-- atomic group that waits for one fsync instead of five.  One pgbench
-- transaction = 5 messages.
--   pgbench -n -M prepared -c 30 -D nsessions=1000 -f bench/append_batch5.sql
\set i random(1, :nsessions)
SELECT fleetlm.append_batch('bench-' || :i, 'user-' || :i, '[{"kind": "text", "content": {"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}}, {"kind": "text", "content": {"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}}, {"kind": "text", "content": {"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}}, {"kind": "text", "content": {"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}}, {"kind": "text", "content": {"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}}]');
