-- Replay a whole session of 1,000 messages that is not in fleetlm's shared
-- session table: cold-1 .. cold-N are created by bench/run before the run,
-- fully applied to fleetlm.messages and left idle until the applier evicted
-- them (fleetlm.stat.active_sessions); messages() never puts a session back.
--   pgbench -n -M prepared -D ncold=200 -f bench/cold_replay.sql
\set i random(1, :ncold)
SELECT * FROM fleetlm.messages('cold-' || :i, 0, 1000);
