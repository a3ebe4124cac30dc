import { locateStatement, type DdlRecord, type MissingValue } from './ddl-record';
import { splitStatements, withoutKeyword, type Statement } from '../pg/sql-lexer';

/**
 * What replay does with one archived schema change (docs/architecture.md, "Schema changes"):
 *   run            a statement, under the session settings it ran under
 *   skip           nothing: temporary objects, pitr's own, a command that changed nothing on the source,
 *                  an index rebuild
 *   extension-script  the marker before an extension's script: until the extension command's record,
 *                  the rows of the transaction are the script's, which the replayed command makes again
 *   unreplayable   no statement can be derived; the reason says why
 */
export type DdlAction =
  | {
      kind: 'run';
      statement: string;
      settings: Record<string, string>;
      missing: MissingValue[];
      how: string;
      /** DETACH PARTITION … CONCURRENTLY (or FINALIZE): the partition it detaches, which keeps its partition constraint as a CHECK. */
      detachedConcurrently?: string;
    }
  | { kind: 'skip'; reason: string }
  | { kind: 'extension-script' }
  | { kind: 'unreplayable'; reason: string };

const TEMP_SCHEMA = /^pg_temp(_\d+)?$/;
const PITR_SCHEMA = 'pitr';

export function ddlAction(record: DdlRecord): DdlAction {
  if (record.event === 'extension-script') return { kind: 'extension-script' };
  const commands = record.commands.filter((c) => !c.inExtension);
  if (commands.length > 0 && commands.every((c) => c.schema !== null && TEMP_SCHEMA.test(c.schema)))
    return { kind: 'skip', reason: 'it changes temporary objects only, which are not part of the database' };
  if (commands.length > 0 && commands.every((c) => c.schema === PITR_SCHEMA)) return { kind: 'skip', reason: "it changes pitr's own objects" };
  if (record.format >= 2 && commands.length === 0) {
    if (record.dropped && record.dropped.count > 0) {
      if (record.dropped.temporaryOnly) return { kind: 'skip', reason: 'it drops temporary objects only, which are not part of the database' };
    } else if (record.tag !== 'GRANT' && record.tag !== 'REVOKE') {
      return { kind: 'skip', reason: 'it changed nothing on the source (IF EXISTS / IF NOT EXISTS found nothing to do)' };
    }
  }
  if (record.tag === 'REINDEX') return { kind: 'skip', reason: 'rebuilding an index changes neither rows nor schema' };
  const settings = record.settings;
  const run = (statement: string, how: string): DdlAction => ({ kind: 'run', statement, settings, missing: record.missing ?? [], how });

  if (record.tag === 'CREATE TABLE AS' || record.tag === 'SELECT INTO') {
    // the rows are in the stream (before this record): create the table empty, never run the query again
    if (record.definition) return run(record.definition, 'the table as the query made it, without rows: its rows are in the stream');
    const located = locateStatement(record);
    if (record.tag === 'CREATE TABLE AS' && located.statement !== null) return run(withNoData(located.statement), 'the statement WITH NO DATA');
    return { kind: 'unreplayable', reason: `the ${record.tag} was archived without the new table's definition (re-run pitr init on the source)` };
  }

  const located = locateStatement(record);
  if (located.statement === null) {
    const drops = dropStatements(record);
    if (drops) return run(drops, 'the objects it dropped');
    return { kind: 'unreplayable', reason: located.reason };
  }
  const statement = splitStatements(located.statement, { standardConformingStrings: settings.standard_conforming_strings !== 'off' })[0];
  if (!statement) return { kind: 'skip', reason: 'the statement is empty' };
  const rewritten = transactional(statement, record.tag);
  const action = run(rewritten, rewritten === statement.text ? `the ${located.origin} statement` : `the ${located.origin} statement without CONCURRENTLY`);
  const detached = record.tag === 'ALTER TABLE' ? concurrentlyDetached(statement) : undefined;
  return detached && action.kind === 'run' ? { ...action, detachedConcurrently: detached } : action;
}

/** The partition named by ALTER TABLE … DETACH PARTITION name CONCURRENTLY | FINALIZE, as written. */
function concurrentlyDetached(statement: Statement): string | undefined {
  const tokens = statement.tokens.filter((t) => t.kind !== 'space' && t.kind !== 'comment' && t.depth === 0);
  const at = tokens.findIndex((t, i) => t.upper === 'DETACH' && tokens[i + 1]?.upper === 'PARTITION');
  if (at === -1) return undefined;
  const last = tokens[tokens.length - 1];
  if (last?.upper !== 'CONCURRENTLY' && last?.upper !== 'FINALIZE') return undefined;
  const name = tokens.slice(at + 2, tokens.length - 1);
  const first = name[0];
  const end = name[name.length - 1];
  return first && end ? statement.text.slice(first.start, end.end) : undefined;
}

/**
 * CONCURRENTLY cannot run inside a transaction block, and replay applies each source transaction in
 * one. On a database being restored nobody else waits for the locks, so the plain form has the same
 * effect. A detach interrupted on the source (DETACH … FINALIZE) is a plain detach on the target.
 */
function transactional(statement: Statement, tag: string): string {
  if (tag === 'CREATE INDEX' || tag === 'DROP INDEX' || tag === 'REFRESH MATERIALIZED VIEW') return withoutKeyword(statement, 'CONCURRENTLY');
  if (tag === 'ALTER TABLE' && statement.tokens.some((t) => t.kind === 'word' && t.upper === 'DETACH')) {
    const once = withoutKeyword(statement, 'CONCURRENTLY');
    const reparsed = splitStatements(once)[0];
    return reparsed ? withoutKeyword(reparsed, 'FINALIZE') : once;
  }
  return statement.text;
}

/** An archive without definitions (format 1): the CREATE TABLE AS statement, made to create no rows. */
function withNoData(statement: string): string {
  const trimmed = statement.replace(/\s+WITH\s+(NO\s+)?DATA\s*$/i, '');
  return `${trimmed} WITH NO DATA`;
}

const DROPPABLE: Record<string, string> = {
  table: 'TABLE',
  index: 'INDEX',
  view: 'VIEW',
  'materialized view': 'MATERIALIZED VIEW',
  sequence: 'SEQUENCE',
  function: 'FUNCTION',
  procedure: 'PROCEDURE',
  type: 'TYPE',
  schema: 'SCHEMA',
  'foreign table': 'FOREIGN TABLE',
};

/** A DROP whose statement is unknown: the objects it named, dropped with what depended on them (as on the source). */
function dropStatements(record: DdlRecord): string | undefined {
  const originals = record.dropped?.originals ?? [];
  if (!record.tag.startsWith('DROP ') || originals.length === 0) return undefined;
  const statements: string[] = [];
  for (const object of originals) {
    const keyword = DROPPABLE[object.type];
    if (!keyword) return undefined;
    statements.push(`DROP ${keyword} IF EXISTS ${object.identity} CASCADE`);
  }
  return statements.join('; ');
}
