import { commandTag, firesDdlCommandEnd, splitStatements, type Statement } from '../pg/sql-lexer';

/**
 * A schema change as archived (prefix pitr.ddl; docs/format.md, "Schema change records"). Format 1
 * records (archives made before format 2) carry only the client string, the rank of the statement in
 * it, the search_path and the objects; format 2 adds where the statement came from, the session
 * settings, what was dropped, and the facts replay needs for CREATE TABLE AS and fast defaults.
 */
export const DDL_RECORD_FORMAT = 2;

export interface DdlCommand {
  tag: string;
  type: string;
  schema: string | null;
  identity: string | null;
  objid?: number | null;
  inExtension?: boolean;
}

export interface MissingValue {
  table: string;
  column: string;
  /** Text of the value rows existing when the column was added read for it (archive settings); null for NULL or arrays. */
  value: string | null;
  array: boolean;
}

export interface DdlRecord {
  format: number;
  /** 'command' for a DDL command; 'extension-script' for the marker before an extension's script runs. */
  event: 'command' | 'extension-script';
  tag: string;
  /** The client's whole string (current_query()). */
  query: string;
  /** PG_CONTEXT below the capture function's own frame; null for a client statement. */
  context: string | null;
  /** Client statements: rank among the string's DDL statements, and among those with the same tag. */
  index: number | null;
  tagIndex: number | null;
  /** Statements run by a SQL-language function: its source, when the function's name was unambiguous. */
  functionSource: string | null;
  settings: Record<string, string>;
  role: string | null;
  server: number | null;
  commands: DdlCommand[];
  dropped: { temporaryOnly: boolean | null; count: number; originals: { type: string; schema: string | null; identity: string }[] } | null;
  /** CREATE TABLE AS / SELECT INTO: the new table's definition without rows. */
  definition: string | null;
  missing: MissingValue[] | null;
}

/** Parses a pitr.ddl message; any format. Throws a SyntaxError on anything that is not one. */
export function parseDdlRecord(content: Buffer | string): DdlRecord {
  const raw = JSON.parse(typeof content === 'string' ? content : content.toString('utf8')) as Record<string, unknown>;
  if (typeof raw !== 'object' || raw === null || typeof raw.tag !== 'string' || (raw.event !== 'extension-script' && typeof raw.query !== 'string'))
    throw new SyntaxError('not a schema change record pitr wrote (no command tag or statement): something else emitted a message with its prefix');
  const format = typeof raw.format === 'number' ? raw.format : 1;
  const text = (v: unknown): string | null => (typeof v === 'string' ? v : null);
  const int = (v: unknown): number | null => (typeof v === 'number' && Number.isInteger(v) ? v : null);
  const settings: Record<string, string> =
    format >= 2 && raw.settings && typeof raw.settings === 'object' ? (raw.settings as Record<string, string>) : { search_path: String(raw.search_path ?? '') };
  return {
    format,
    event: raw.event === 'extension-script' ? 'extension-script' : 'command',
    tag: String(raw.tag ?? ''),
    query: String(raw.query ?? ''),
    context: text(raw.context),
    index: int(raw.index) ?? (format === 1 ? 0 : null),
    tagIndex: int(raw.tagIndex),
    functionSource: text(raw.functionSource),
    settings,
    role: text(raw.role),
    server: int(raw.server),
    commands: Array.isArray(raw.commands) ? (raw.commands as DdlCommand[]) : [],
    dropped: (raw.dropped as DdlRecord['dropped']) ?? null,
    definition: text(raw.definition),
    missing: Array.isArray(raw.missing) ? (raw.missing as MissingValue[]) : null,
  };
}

/** Where the statement that fired came from, and its exact text when it could be found. */
export type LocatedStatement = { origin: 'client' | 'nested' | 'sql-function'; statement: string } | { origin: 'unknown'; statement: null; reason: string };

const FRAME_START =
  /^(PL\/pgSQL function |SQL function "|SQL statement "|PL\/[A-Za-z0-9]+ function|extension script file |COPY |JSON data|while |during |portal )/;

/**
 * The statement this record is about. Client statements are found in the client string by their rank,
 * checked against the tag (a statement of another kind at that rank means the count went wrong: the
 * statement is looked for by its rank among statements of its own tag instead). Nested statements
 * are in PG_CONTEXT (`SQL statement "…"`, unescaped, up to the next frame). Statements of SQL-language
 * functions are found in the function's source by their number.
 */
export function locateStatement(record: DdlRecord): LocatedStatement {
  const scs = record.settings.standard_conforming_strings !== 'off';
  if (record.context === null || record.context === '') return clientStatement(record, scs);
  const context = record.context;
  if (context.startsWith('SQL statement "')) {
    const body = context.slice('SQL statement "'.length);
    // the statement ends at a quote followed by the next frame, or at the context's last quote
    const ends: number[] = [];
    for (let at = body.indexOf('"\n'); at !== -1; at = body.indexOf('"\n', at + 1)) if (FRAME_START.test(body.slice(at + 2))) ends.push(at);
    if (body.endsWith('"')) ends.push(body.length - 1);
    for (const end of ends) {
      const statement = body.slice(0, end);
      const parsed = splitStatements(statement, { standardConformingStrings: scs });
      if (parsed.length === 1 && tagMatches(parsed[0] as Statement, record.tag)) return { origin: 'nested', statement };
    }
    const first = ends[0];
    if (first !== undefined) return { origin: 'nested', statement: body.slice(0, first) };
    return { origin: 'unknown', statement: null, reason: 'the statement in its context could not be read' };
  }
  const sqlFunction = /^SQL function "([^"]*)" statement (\d+)/.exec(context);
  if (sqlFunction) {
    if (record.functionSource === null)
      return {
        origin: 'unknown',
        statement: null,
        reason: `it ran in SQL function "${sqlFunction[1]}", whose source could not be told apart from others of that name`,
      };
    const statements = splitStatements(record.functionSource, { standardConformingStrings: scs });
    const statement = statements[Number(sqlFunction[2]) - 1];
    if (statement && tagMatches(statement, record.tag)) return { origin: 'sql-function', statement: statement.text };
    return { origin: 'unknown', statement: null, reason: `statement ${sqlFunction[2]} of SQL function "${sqlFunction[1]}" is not a ${record.tag}` };
  }
  const frame = context.split('\n', 1)[0] ?? '';
  return { origin: 'unknown', statement: null, reason: `it ran from code whose statement text is not available (${frame})` };
}

function clientStatement(record: DdlRecord, scs: boolean): LocatedStatement {
  const statements = splitStatements(record.query, { standardConformingStrings: scs });
  if (statements.length === 1) return { origin: 'client', statement: (statements[0] as Statement).text };
  const server = record.server ?? 150000;
  const firing = statements.filter((s) => firesDdlCommandEnd(s, server));
  if (record.tagIndex !== null) {
    const sameTag = firing.filter((s) => commandTag(s) === record.tag);
    const found = sameTag[record.tagIndex];
    if (found) return { origin: 'client', statement: found.text };
  }
  const byRank = record.index === null ? undefined : firing[record.index];
  if (byRank && tagMatches(byRank, record.tag)) return { origin: 'client', statement: byRank.text };
  if (record.format === 1 && byRank) return { origin: 'client', statement: byRank.text };
  return {
    origin: 'unknown',
    statement: null,
    reason: `the ${record.tag} statement could not be found among the ${statements.length} statements of the client string`,
  };
}

/** The statement is of the recorded tag (its first word at least, for tags the lexer names differently). */
function tagMatches(statement: Statement, tag: string): boolean {
  const found = commandTag(statement);
  if (found === tag) return true;
  return found !== undefined && found.split(' ')[0] === tag.split(' ')[0];
}

/** One line naming the change, for `pitr log` and messages: the statement when it is known, else the tag. */
export function ddlSummary(record: DdlRecord): string {
  const located = locateStatement(record);
  return located.statement ?? `${record.tag} (${located.reason})`;
}
