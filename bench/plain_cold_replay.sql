-- Baseline of cold_replay (plain_cold_replay): the same 1,000 rows of a
-- random cold session, read with a plain SELECT from the table
-- fleetlm.messages (its primary key (session_id, seq)), as an application
-- would read its own message table.  A SELECT on the table does not touch
-- fleetlm's shared session table, so it does not warm cold_replay's
-- sessions.
--   pgbench -n -M prepared -D ncold=200 -f bench/plain_cold_replay.sql
\set i random(1, :ncold)
SELECT * FROM fleetlm.messages WHERE session_id = 'cold-' || :i ORDER BY seq LIMIT 1000;
