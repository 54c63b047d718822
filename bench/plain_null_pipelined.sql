-- Reference of append_pipelined (plain_null_pipelined), not a baseline of
-- any goal: bench/plain_null.sql 5 times in a pgbench pipeline (run it
-- with 30 clients, durable).  pgbench 15 sends one Sync, at \endpipeline,
-- so the 5 WAL messages are one implicit transaction with one commit flush,
-- as plain_pipelined's 5 rows are: the cheapest durable pipeline of 5.
-- One pgbench transaction = 5 messages.
--   pgbench -n -M prepared -c 30 -f bench/plain_null_pipelined.sql
\startpipeline
SELECT pg_logical_emit_message(true, 'fleetlm-bench', 'x');
SELECT pg_logical_emit_message(true, 'fleetlm-bench', 'x');
SELECT pg_logical_emit_message(true, 'fleetlm-bench', 'x');
SELECT pg_logical_emit_message(true, 'fleetlm-bench', 'x');
SELECT pg_logical_emit_message(true, 'fleetlm-bench', 'x');
\endpipeline
