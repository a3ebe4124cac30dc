import { MessagePrefix } from '../archive/segment-format';
import { quoteIdent, quoteLiteral } from './sql-quote';

/** The project's own schema on the source; never part of the user's data. */
export const PITR_SCHEMA = 'pitr';
export const DDL_EVENT_TRIGGER = 'pitr_capture_ddl';

/**
 * DDL is not decoded by PostgreSQL. An event trigger at ddl_command_end emits the statement as a
 * transactional logical message, so it lands in the stream at exactly its transaction's commit.
 * current_query() is the whole client string: a multi-statement string fires the trigger once per
 * command, so it is emitted once per (string, statement start). SECURITY DEFINER because emitting needs
 * privileges ordinary DDL authors may lack; search_path is pinned for safety.
 */
export const CAPTURE_DDL_FUNCTION_SQL = `
CREATE OR REPLACE FUNCTION ${PITR_SCHEMA}.capture_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE
  query text := current_query();
  seen_key text := md5(coalesce(current_query(), '')) || statement_timestamp()::text;
  commands json;
BEGIN
  IF current_setting('pitr.ddl_seen', true) IS NOT DISTINCT FROM seen_key THEN
    RETURN;
  END IF;
  PERFORM set_config('pitr.ddl_seen', seen_key, true);
  SELECT json_agg(json_build_object('tag', command_tag, 'type', object_type, 'schema', schema_name, 'identity', object_identity))
    INTO commands FROM pg_event_trigger_ddl_commands();
  PERFORM pg_logical_emit_message(true, ${quoteLiteral(MessagePrefix.Ddl)}, json_build_object(
    'query', query,
    'tag', tg_tag,
    'search_path', current_setting('search_path'),
    'role', session_user,
    'commands', coalesce(commands, '[]'::json))::text);
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
