import { MessagePrefix } from '../archive/segment-format';
import { DDL_RECORD_FORMAT } from '../archive/ddl-record';
import { quoteIdent, quoteLiteral } from '../pg/sql-quote';
import { PITR_SCHEMA } from './in-band-sql';

/**
 * Schema changes are not decoded by PostgreSQL. Event triggers write each one into the stream as a
 * transactional logical message (prefix pitr.ddl), so that it is archived at exactly its position among
 * the row changes of its transaction. What each record holds, and why, is in docs/architecture.md
 * ("Schema changes"); the replay side decides from it what to run (src/restore/ddl-action.ts).
 *
 * Terminology:
 *   client statement  DDL the client sent itself: current_query() is the client's whole string, the
 *                     record says which of its DDL statements fired (index, and index among its tag)
 *   nested statement  DDL run from a function, procedure or DO block (plpgsql EXECUTE or a static
 *                     statement, SPI in any language): PG_CONTEXT carries its exact text
 *   extension script  the commands a CREATE/ALTER EXTENSION runs: not recorded (replaying the extension
 *                     command runs them), bracketed by a start marker so replay can tell their rows
 *
 * The functions are SECURITY DEFINER (emitting messages and fixing replica identities needs privileges a
 * migration's role may lack) and leave search_path alone (the caller's is recorded for replay), so
 * every name they use is qualified with pg_catalog. Nothing they do may make the user's DDL fail:
 * whatever is only helpful (a table's definition, fast defaults, the replica identity fix) runs in its
 * own exception block.
 */
export const DDL_EVENT_TRIGGER = 'pitr_capture_ddl';
export const DROP_EVENT_TRIGGER = 'pitr_capture_drop';
export const EXTENSION_EVENT_TRIGGER = 'pitr_capture_extension';
/** Every event trigger pitr installs, for init and for leaving them out of schema dumps. */
export const EVENT_TRIGGERS = [DDL_EVENT_TRIGGER, DROP_EVENT_TRIGGER, EXTENSION_EVENT_TRIGGER] as const;

/** Session settings that change what a DDL statement means (literals, defaults, names, storage). */
const RECORDED_SETTINGS = [
  'search_path',
  'DateStyle',
  'IntervalStyle',
  'TimeZone',
  'standard_conforming_strings',
  'backslash_quote',
  'escape_string_warning',
  'array_nulls',
  'transform_null_equals',
  'xmloption',
  'lc_monetary',
  'lc_numeric',
  'default_tablespace',
  'default_table_access_method',
  'default_toast_compression',
  'check_function_bodies',
] as const;

/** The settings under which definitions and values are printed: the archive's own (docs/format.md). */
const PINNED = `SET search_path = pg_catalog SET DateStyle = 'ISO, YMD' SET TimeZone = 'UTC' SET IntervalStyle = 'postgres' SET extra_float_digits = 3 SET bytea_output = 'hex'`;

const ddlPrefix = quoteLiteral(MessagePrefix.Ddl);

/**
 * CREATE TABLE for a table made by CREATE TABLE AS or SELECT INTO: its columns as the query made them
 * (names, types, collations), storage method, options and tablespace, no rows. Replay creates the
 * table from this instead of running the query again (its rows come from the stream, and the query may
 * read temporary tables). Printed with search_path = pg_catalog, so every name is qualified.
 */
const COLUMNS_DEFINITION_SQL = `
CREATE OR REPLACE FUNCTION ${PITR_SCHEMA}.table_without_rows(relid oid) RETURNS text
LANGUAGE sql STABLE ${PINNED} AS $fn$
  SELECT 'CREATE ' || CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END || 'TABLE ' || c.oid::regclass::text || ' ('
      || coalesce((SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
                       || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                               THEN ' COLLATE ' || quote_ident(cn.nspname) || '.' || quote_ident(co.collname) ELSE '' END,
                       ', ' ORDER BY a.attnum)
                     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                     LEFT JOIN pg_collation co ON co.oid = a.attcollation LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
      || ')'
      || coalesce(' USING ' || quote_ident(nullif((SELECT amname FROM pg_am WHERE oid = c.relam), 'heap')), '')
      || coalesce(' WITH (' || array_to_string(c.reloptions, ', ') || ')', '')
      || coalesce(' TABLESPACE ' || quote_ident((SELECT spcname FROM pg_tablespace WHERE oid = nullif(c.reltablespace, 0))), '')
    FROM pg_class c WHERE c.oid = relid
$fn$`;

/**
 * The "missing" values of the given tables' columns: what rows that existed when a column was added with
 * a default read for it (PostgreSQL 11+ stores the default's value once instead of rewriting the table).
 * A default like now() was evaluated on the source at that moment; replay compares and fixes the
 * target's. Array-typed columns are reported without a value.
 */
const MISSING_VALUES_SQL = `
CREATE OR REPLACE FUNCTION ${PITR_SCHEMA}.missing_values(relids oid[]) RETURNS jsonb
LANGUAGE plpgsql STABLE ${PINNED} AS $fn$
DECLARE
  r record;
  v text;
  result jsonb := '[]';
BEGIN
  FOR r IN SELECT a.attrelid::regclass::text AS tab, a.attname, format_type(a.atttypid, a.atttypmod) AS typ, a.attmissingval::text AS missing,
                  t.typcategory = 'A' AS is_array
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = ANY (relids) AND a.atthasmissing AND NOT a.attisdropped
            ORDER BY a.attrelid, a.attnum LOOP
    v := NULL;
    IF NOT r.is_array THEN
      EXECUTE format('SELECT ($1::%s[])[1]::text', r.typ) INTO v USING r.missing;
    END IF;
    result := result || jsonb_build_object('table', r.tab, 'column', r.attname, 'value', v, 'array', r.is_array);
  END LOOP;
  RETURN result;
END
$fn$`;

/** sql_drop runs just before the command's ddl_command_end: it leaves what was dropped for the capture to record. */
const CAPTURE_DROP_SQL = `
CREATE OR REPLACE FUNCTION ${PITR_SCHEMA}.capture_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE
  dropped jsonb;
BEGIN
  SELECT pg_catalog.jsonb_build_object(
           'temporaryOnly', pg_catalog.bool_and(is_temporary OR schema_name LIKE 'pg\\_temp%'),
           'count', pg_catalog.count(*),
           'originals', COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('type', object_type, 'schema', schema_name, 'identity', object_identity))
                                   FILTER (WHERE original), '[]'::jsonb))
    INTO dropped FROM pg_catalog.pg_event_trigger_dropped_objects();
  PERFORM pg_catalog.set_config('pitr.dropped', dropped::text, true);
END
$fn$`;

/**
 * ddl_command_start of CREATE/ALTER EXTENSION: the script's own commands fire the capture trigger too
 * (looking like client statements), and its inserts are decoded like any row change. A depth counter
 * tells the capture to leave the script's commands out; the marker tells replay which rows the
 * replayed extension command makes again.
 */
const CAPTURE_EXTENSION_SQL = `
CREATE OR REPLACE FUNCTION ${PITR_SCHEMA}.capture_extension() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
BEGIN
  PERFORM pg_catalog.set_config('pitr.extension_depth',
    (COALESCE(NULLIF(pg_catalog.current_setting('pitr.extension_depth', true), ''), '0')::int OPERATOR(pg_catalog.+) 1)::text, true);
  PERFORM pg_catalog.pg_logical_emit_message(true, ${ddlPrefix},
    pg_catalog.convert_to(pg_catalog.jsonb_build_object('format', ${DDL_RECORD_FORMAT}, 'event', 'extension-script', 'tag', tg_tag)::text, 'UTF8'));
END
$fn$`;

const settingsJson = RECORDED_SETTINGS.map((name) => `${quoteLiteral(name)}, pg_catalog.current_setting(${quoteLiteral(name)})`).join(', ');

/** ddl_command_end: one record per DDL command (docs/format.md, "Schema change records"). */
const CAPTURE_DDL_SQL = `
CREATE OR REPLACE FUNCTION ${PITR_SCHEMA}.capture_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE
  query text := pg_catalog.current_query();
  context text;
  nested text;
  string_key text;
  state jsonb;
  ordinal int;
  tag_ordinal int;
  depth int := COALESCE(NULLIF(pg_catalog.current_setting('pitr.extension_depth', true), ''), '0')::int;
  commands jsonb;
  tables oid[];
  keyed oid[];
  table_name regclass;
  dropped jsonb;
  definition text;
  missing jsonb;
  function_source text;
  fix regclass;
BEGIN
  IF tg_tag IN ('CREATE EXTENSION', 'ALTER EXTENSION') AND depth OPERATOR(pg_catalog.>) 0 THEN
    depth := depth OPERATOR(pg_catalog.-) 1;
    PERFORM pg_catalog.set_config('pitr.extension_depth', depth::text, true);
  ELSIF depth OPERATOR(pg_catalog.>) 0 THEN
    RETURN; -- a command of an extension's script
  END IF;
  SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('tag', command_tag, 'type', object_type, 'schema', schema_name,
           'identity', object_identity, 'objid', objid::bigint, 'inExtension', in_extension)),
         pg_catalog.array_agg(objid) FILTER (WHERE object_type = 'table')
    INTO commands, tables FROM pg_catalog.pg_event_trigger_ddl_commands();
  -- the tables of indexes made by the command too (a primary key added to a partitioned table makes one on each partition)
  SELECT pg_catalog.array_agg(DISTINCT t) INTO keyed FROM (
      SELECT i.indrelid AS t FROM pg_catalog.pg_event_trigger_ddl_commands() c JOIN pg_catalog.pg_index i ON i.indexrelid OPERATOR(pg_catalog.=) c.objid
       WHERE c.object_type OPERATOR(pg_catalog.=) 'index'
      UNION SELECT pg_catalog.unnest(tables)
      UNION SELECT p.relid FROM pg_catalog.unnest(tables) u(t), pg_catalog.pg_partition_tree(u.t) p) k;
  IF commands IS NOT NULL AND NOT (SELECT pg_catalog.bool_or(NOT (c OPERATOR(pg_catalog.->>) 'inExtension')::boolean) FROM pg_catalog.jsonb_array_elements(commands) c) THEN
    RETURN; -- every object belongs to an extension (its script, run by a command this trigger did not see start)
  END IF;

  GET DIAGNOSTICS context = PG_CONTEXT;
  IF pg_catalog.strpos(context, E'\\n') OPERATOR(pg_catalog.>) 0 THEN
    nested := pg_catalog.substr(context, pg_catalog.strpos(context, E'\\n') OPERATOR(pg_catalog.+) 1);
  ELSE
    -- a client statement: which of the string's DDL statements this is, overall and among its tag
    string_key := pg_catalog.md5(COALESCE(query, '')) OPERATOR(pg_catalog.||) pg_catalog.statement_timestamp()::text;
    state := NULLIF(pg_catalog.current_setting('pitr.ddl_string', true), '')::jsonb;
    IF state IS NULL OR (state OPERATOR(pg_catalog.->>) 'key') IS DISTINCT FROM string_key THEN
      state := pg_catalog.jsonb_build_object('key', string_key, 'index', -1, 'tags', '{}'::jsonb);
    END IF;
    ordinal := (state OPERATOR(pg_catalog.->>) 'index')::int OPERATOR(pg_catalog.+) 1;
    tag_ordinal := COALESCE((state OPERATOR(pg_catalog.->) 'tags' OPERATOR(pg_catalog.->>) tg_tag)::int, -1) OPERATOR(pg_catalog.+) 1;
    state := pg_catalog.jsonb_set(pg_catalog.jsonb_set(state, '{index}', pg_catalog.to_jsonb(ordinal)), ARRAY['tags', tg_tag], pg_catalog.to_jsonb(tag_ordinal));
    -- session-wide: a COMMIT inside the string must not restart the count
    PERFORM pg_catalog.set_config('pitr.ddl_string', state::text, false);
  END IF;

  dropped := NULLIF(pg_catalog.current_setting('pitr.dropped', true), '')::jsonb;
  PERFORM pg_catalog.set_config('pitr.dropped', '', true);

  IF nested LIKE 'SQL function "%' THEN
    SELECT CASE WHEN pg_catalog.count(*) OPERATOR(pg_catalog.=) 1 THEN pg_catalog.min(p.prosrc) END INTO function_source
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
     WHERE l.lanname OPERATOR(pg_catalog.=) 'sql' AND p.proname OPERATOR(pg_catalog.=) pg_catalog.substring(nested, '^SQL function "([^"]*)"');
  END IF;
  IF tg_tag IN ('CREATE TABLE AS', 'SELECT INTO') AND tables IS NOT NULL THEN
    BEGIN
      definition := ${PITR_SCHEMA}.table_without_rows(tables[1]);
    EXCEPTION WHEN OTHERS THEN
      definition := NULL;
    END;
  END IF;
  IF tg_tag OPERATOR(pg_catalog.=) 'ALTER TABLE' AND tables IS NOT NULL THEN
    BEGIN
      missing := ${PITR_SCHEMA}.missing_values(tables);
    EXCEPTION WHEN OTHERS THEN
      missing := NULL;
    END;
  END IF;

  -- as UTF-8 bytes: a message's body is sent as stored, in the database's encoding, unlike row values
  PERFORM pg_catalog.pg_logical_emit_message(true, ${ddlPrefix}, pg_catalog.convert_to(pg_catalog.jsonb_build_object(
    'format', ${DDL_RECORD_FORMAT},
    'tag', tg_tag,
    'query', query,
    'context', nested,
    'index', ordinal,
    'tagIndex', tag_ordinal,
    'functionSource', function_source,
    'settings', pg_catalog.jsonb_build_object(${settingsJson}),
    'role', session_user,
    'server', pg_catalog.current_setting('server_version_num')::int,
    'commands', COALESCE(commands, '[]'::jsonb),
    'dropped', dropped,
    'definition', definition,
    'missing', missing)::text, 'UTF8'));

  -- A table without a usable replica identity makes its own UPDATEs and DELETEs fail under a FOR ALL
  -- TABLES publication: give it REPLICA IDENTITY FULL (recorded like any DDL), unless turned off.
  IF tables IS NOT NULL AND COALESCE(NULLIF(pg_catalog.current_setting('pitr.auto_replica_identity', true), ''), 'on') OPERATOR(pg_catalog.<>) 'off' THEN
    FOR fix IN
      SELECT c.oid::regclass FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
       WHERE c.oid OPERATOR(pg_catalog.=) ANY (tables) AND c.relkind OPERATOR(pg_catalog.=) 'r' AND c.relpersistence OPERATOR(pg_catalog.=) 'p'
         AND n.nspname OPERATOR(pg_catalog.<>) ${quoteLiteral(PITR_SCHEMA)}
         AND ((c.relreplident OPERATOR(pg_catalog.=) 'd' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND i.indisprimary))
           OR (c.relreplident OPERATOR(pg_catalog.=) 'i' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND i.indisreplident)))
    LOOP
      BEGIN
        EXECUTE pg_catalog.format('ALTER TABLE %s REPLICA IDENTITY FULL', fix);
        INSERT INTO ${PITR_SCHEMA}.auto_replica_identity (relid, relname) VALUES (fix::oid, fix::text)
          ON CONFLICT (relid) DO UPDATE SET relname = excluded.relname, set_at = pg_catalog.now();
        RAISE NOTICE 'pitr: table % has no primary key; its replica identity is now FULL, so that its UPDATEs and DELETEs can be archived', fix
          USING HINT = 'add a primary key (then ALTER TABLE ... REPLICA IDENTITY DEFAULT), or SET pitr.auto_replica_identity = off to leave new tables alone';
      EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'pitr: could not set REPLICA IDENTITY FULL on table %: %', fix, SQLERRM;
      END;
    END LOOP;
  END IF;
  IF keyed IS NOT NULL AND pg_catalog.to_regclass(${quoteLiteral(`${PITR_SCHEMA}.auto_replica_identity`)}) IS NOT NULL THEN
    IF nested IS NULL AND query OPERATOR(pg_catalog.~*) 'replica[[:space:]]+identity' THEN
      -- the user set a replica identity of their own: never undo it
      DELETE FROM ${PITR_SCHEMA}.auto_replica_identity WHERE relid OPERATOR(pg_catalog.=) ANY (keyed);
    ELSE
      -- a table pitr gave FULL for want of a key has one now (tools and pg_dump add the key after the rows):
      -- back to DEFAULT, so that its changes carry the key only and replay in batches
      FOR table_name IN
        SELECT c.oid::regclass FROM ${PITR_SCHEMA}.auto_replica_identity a JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.relid
         WHERE a.relid OPERATOR(pg_catalog.=) ANY (keyed) AND c.relreplident OPERATOR(pg_catalog.=) 'f'
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND i.indisprimary)
      LOOP
        BEGIN
          EXECUTE pg_catalog.format('ALTER TABLE %s REPLICA IDENTITY DEFAULT', table_name);
          DELETE FROM ${PITR_SCHEMA}.auto_replica_identity WHERE relid OPERATOR(pg_catalog.=) table_name::oid;
        EXCEPTION WHEN OTHERS THEN
          RAISE WARNING 'pitr: could not set REPLICA IDENTITY DEFAULT back on table %: %', table_name, SQLERRM;
        END;
      END LOOP;
    END IF;
  END IF;
END
$fn$`;

/**
 * The tables the capture gave REPLICA IDENTITY FULL for want of a key, so that it sets DEFAULT back once
 * they have one and never undoes a FULL the user chose. On the source only (replay and backups leave
 * pitr's schema out).
 */
export const AUTO_REPLICA_IDENTITY_SQL = `CREATE TABLE IF NOT EXISTS ${PITR_SCHEMA}.auto_replica_identity (relid oid PRIMARY KEY, relname text NOT NULL, set_at timestamptz NOT NULL DEFAULT now())`;

/** Functions first (the triggers name them); idempotent, so `pitr init` runs them every time. */
export const DDL_CAPTURE_FUNCTIONS_SQL = [
  AUTO_REPLICA_IDENTITY_SQL,
  COLUMNS_DEFINITION_SQL,
  MISSING_VALUES_SQL,
  CAPTURE_DROP_SQL,
  CAPTURE_EXTENSION_SQL,
  CAPTURE_DDL_SQL,
];

/** The event triggers, by name, with the statement creating each. */
export const DDL_CAPTURE_TRIGGERS: readonly { name: string; sql: string }[] = [
  { name: DDL_EVENT_TRIGGER, sql: `CREATE EVENT TRIGGER ${quoteIdent(DDL_EVENT_TRIGGER)} ON ddl_command_end EXECUTE FUNCTION ${PITR_SCHEMA}.capture_ddl()` },
  { name: DROP_EVENT_TRIGGER, sql: `CREATE EVENT TRIGGER ${quoteIdent(DROP_EVENT_TRIGGER)} ON sql_drop EXECUTE FUNCTION ${PITR_SCHEMA}.capture_drop()` },
  {
    name: EXTENSION_EVENT_TRIGGER,
    sql: `CREATE EVENT TRIGGER ${quoteIdent(EXTENSION_EVENT_TRIGGER)} ON ddl_command_start WHEN TAG IN ('CREATE EXTENSION', 'ALTER EXTENSION') EXECUTE FUNCTION ${PITR_SCHEMA}.capture_extension()`,
  },
];
