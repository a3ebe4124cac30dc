import { MessagePrefix } from '../archive/segment-format';
import { quoteLiteral } from '../pg/sql-quote';

/** The project's own schema on the source; never part of the user's data. */
export const PITR_SCHEMA = 'pitr';
/**
 * The heartbeat: one transactional message carrying the source's clock and every sequence's value, so
 * the newest archived commit keeps moving on an idle source and a restore can set sequences.
 * pg_sequences.last_value is NULL for a sequence never used (or not readable by this role).
 */
export const EMIT_HEARTBEAT_SQL = `
SELECT pg_logical_emit_message(true, ${quoteLiteral(MessagePrefix.Heartbeat)}, convert_to(json_build_object(
  'time', now(),
  'sequences', coalesce((SELECT json_agg(json_build_array(schemaname, sequencename, last_value::text) ORDER BY schemaname, sequencename)
                         FROM pg_catalog.pg_sequences WHERE schemaname <> ${quoteLiteral(PITR_SCHEMA)}), '[]'::json))::text, 'UTF8'))::text AS lsn`;

export const EMIT_MARK_SQL = `SELECT pg_logical_emit_message(true, ${quoteLiteral(MessagePrefix.Mark)}, convert_to(json_build_object('name', $1::text, 'time', now())::text, 'UTF8'))::text AS lsn`;
