import { MessagePrefix } from '../archive/segment-format';
import { quoteIdent, quoteLiteral } from '../pg/sql-quote';

/** The project's own schema on the source; never part of the user's data. */
export const PITR_SCHEMA = 'pitr';
export const DDL_EVENT_TRIGGER = 'pitr_capture_ddl';

/**
 * DDL is not decoded by PostgreSQL. An event trigger at ddl_command_end emits the statement as a
 * transactional logical message, so it lands in the stream at exactly its transaction's commit.
 * current_query() is the whole client string: a string of several statements fires the trigger once
 * per DDL command, so each emission carries `index`, its rank among the string's DDL commands, and
 * replay runs only that statement of the string. SECURITY DEFINER because emitting needs privileges
 * ordinary DDL authors may lack; search_path is not pinned (the caller's is recorded for replay), so
 * every name inside is qualified with pg_catalog instead.
 */
export const CAPTURE_DDL_FUNCTION_SQL = `
CREATE OR REPLACE FUNCTION ${PITR_SCHEMA}.capture_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE
  query text := pg_catalog.current_query();
  string_key text := pg_catalog.md5(COALESCE(query, '')) OPERATOR(pg_catalog.||) pg_catalog.statement_timestamp()::text;
  previous text := pg_catalog.current_setting('pitr.ddl_string', true);
  counter int := 0;
  commands json;
BEGIN
  IF previous IS NOT NULL AND pg_catalog.split_part(previous, '|', 1) OPERATOR(pg_catalog.=) string_key THEN
    counter := pg_catalog.split_part(previous, '|', 2)::int OPERATOR(pg_catalog.+) 1;
  END IF;
  PERFORM pg_catalog.set_config('pitr.ddl_string', string_key OPERATOR(pg_catalog.||) '|' OPERATOR(pg_catalog.||) counter::text, true);
  SELECT pg_catalog.json_agg(pg_catalog.json_build_object('tag', command_tag, 'type', object_type, 'schema', schema_name, 'identity', object_identity))
    INTO commands FROM pg_catalog.pg_event_trigger_ddl_commands();
  PERFORM pg_catalog.pg_logical_emit_message(true, ${quoteLiteral(MessagePrefix.Ddl)}, pg_catalog.json_build_object(
    'query', query,
    'index', counter,
    'tag', tg_tag,
    'search_path', pg_catalog.current_setting('search_path'),
    'role', session_user,
    'commands', COALESCE(commands, '[]'::json))::text);
END
$fn$`;

export const CREATE_DDL_TRIGGER_SQL = `CREATE EVENT TRIGGER ${quoteIdent(DDL_EVENT_TRIGGER)} ON ddl_command_end EXECUTE FUNCTION ${PITR_SCHEMA}.capture_ddl()`;

/**
 * The heartbeat: one transactional message carrying the source's clock and every sequence's value, so
 * the newest archived commit keeps moving on an idle source and a restore can set sequences.
 * pg_sequences.last_value is NULL for a sequence never used (or not readable by this role).
 */
export const EMIT_HEARTBEAT_SQL = `
SELECT pg_logical_emit_message(true, ${quoteLiteral(MessagePrefix.Heartbeat)}, json_build_object(
  'time', now(),
  'sequences', coalesce((SELECT json_agg(json_build_array(schemaname, sequencename, last_value::text) ORDER BY schemaname, sequencename)
                         FROM pg_catalog.pg_sequences WHERE schemaname <> ${quoteLiteral(PITR_SCHEMA)}), '[]'::json))::text)::text AS lsn`;

export const EMIT_MARK_SQL = `SELECT pg_logical_emit_message(true, ${quoteLiteral(MessagePrefix.Mark)}, json_build_object('name', $1::text, 'time', now())::text)::text AS lsn`;
