--
-- fleetlm_setup: the extension is installed (pg_regress --load-extension)
-- and its workers have finished recovery.
--
SELECT extname, extversion FROM pg_extension WHERE extname = 'fleetlm';
SELECT current_setting('fleetlm.database') = current_database() AS right_database;
-- flush() waits for READY (startup_timeout) and then for the applier
SELECT fleetlm.flush();
SELECT state FROM fleetlm.stat;
SELECT writer_pid > 0 AS writer_running, applier_pid > 0 AS applier_running FROM fleetlm.stat;
SELECT backend_type FROM pg_stat_activity WHERE pid = (SELECT applier_pid FROM fleetlm.stat);
-- the tables, and nothing granted to PUBLIC
SELECT c.relname, has_table_privilege('public', c.oid, 'SELECT') AS public_select
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'fleetlm' AND c.relkind IN ('r', 'v') ORDER BY 1;
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'fleetlm' ORDER BY 1;
-- try(sql): run a statement, return 'ok' or its SQLSTATE and message;
-- the later test files use it to show every error without stopping
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
