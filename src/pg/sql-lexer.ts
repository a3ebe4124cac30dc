/**
 * A lexer for PostgreSQL's SQL, as far as pitr needs one: to split a client string into statements, to
 * name a statement's command tag, and to rewrite a keyword. It knows what PostgreSQL's scanner knows
 * about where tokens end: quoted identifiers ("…", U&"…"), strings ('…', E'…' with backslash escapes,
 * B'…', X'…', N'…', U&'…', and '…' with backslashes when standard_conforming_strings is off), dollar
 * quotes ($tag$…$tag$), line and nested block comments, and parentheses.
 */

export type TokenKind = 'space' | 'comment' | 'word' | 'quoted' | 'string' | 'dollar' | 'number' | 'param' | 'semicolon' | 'open' | 'close' | 'other';

export interface Token {
  kind: TokenKind;
  start: number;
  end: number;
  /** Upper-cased text of a word (keywords and unquoted identifiers), else ''. */
  upper: string;
  /** Parenthesis depth at the token (an `open` token counts as outside its own parentheses). */
  depth: number;
}

export interface LexOptions {
  /** standard_conforming_strings (on by default since PostgreSQL 9.1): off makes '…' honour backslash escapes. */
  standardConformingStrings?: boolean;
}

const WORD_START = /[A-Za-z_\u0080-\uffff]/;
const WORD_PART = /[A-Za-z0-9_$\u0080-\uffff]/;

export function tokenize(sql: string, options: LexOptions = {}): Token[] {
  const scs = options.standardConformingStrings ?? true;
  const tokens: Token[] = [];
  let depth = 0;
  let i = 0;
  const n = sql.length;
  const push = (kind: TokenKind, start: number, end: number): void => {
    const upper = kind === 'word' ? sql.slice(start, end).toUpperCase() : '';
    if (kind === 'close') depth = Math.max(0, depth - 1);
    tokens.push({ kind, start, end, upper, depth });
    if (kind === 'open') depth++;
  };
  const stringEnd = (from: number, backslashes: boolean): number => {
    let j = from;
    while (j < n) {
      const c = sql[j];
      if (backslashes && c === '\\') j += 2;
      else if (c === "'" && sql[j + 1] === "'") j += 2;
      else if (c === "'") return j + 1;
      else j++;
    }
    return n;
  };
  while (i < n) {
    const c = sql[i] as string;
    const next = sql[i + 1];
    const start = i;
    if (/\s/.test(c)) {
      while (i < n && /\s/.test(sql[i] as string)) i++;
      push('space', start, i);
    } else if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? n : end + 1;
      push('comment', start, i);
    } else if (c === '/' && next === '*') {
      let nesting = 1;
      i += 2;
      while (i < n && nesting > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          nesting++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          nesting--;
          i += 2;
        } else i++;
      }
      push('comment', start, i);
    } else if (c === "'") {
      i = stringEnd(i + 1, !scs);
      push('string', start, i);
    } else if ((c === 'E' || c === 'e') && next === "'") {
      i = stringEnd(i + 2, true);
      push('string', start, i);
    } else if (/[BbXxNn]/.test(c) && next === "'") {
      i = stringEnd(i + 2, false);
      push('string', start, i);
    } else if ((c === 'U' || c === 'u') && next === '&' && (sql[i + 2] === "'" || sql[i + 2] === '"')) {
      if (sql[i + 2] === "'") {
        i = stringEnd(i + 3, false);
        push('string', start, i);
      } else {
        i = quotedEnd(sql, i + 3);
        push('quoted', start, i);
      }
    } else if (c === '"') {
      i = quotedEnd(sql, i + 1);
      push('quoted', start, i);
    } else if (c === '$' && /[0-9]/.test(next ?? '')) {
      i++;
      while (i < n && /[0-9]/.test(sql[i] as string)) i++;
      push('param', start, i);
    } else if (c === '$') {
      const tag = /^\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/.exec(sql.slice(i, i + 128));
      if (tag) {
        const close = sql.indexOf(tag[0], i + tag[0].length);
        i = close === -1 ? n : close + tag[0].length;
        push('dollar', start, i);
      } else {
        i++;
        push('other', start, i);
      }
    } else if (WORD_START.test(c)) {
      while (i < n && WORD_PART.test(sql[i] as string)) i++;
      push('word', start, i);
    } else if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(next ?? ''))) {
      while (i < n && /[0-9A-Za-z_.]/.test(sql[i] as string)) {
        // 1e-5 and 1e+5 keep their sign
        if ((sql[i] === 'e' || sql[i] === 'E') && (sql[i + 1] === '-' || sql[i + 1] === '+')) i++;
        i++;
      }
      push('number', start, i);
    } else if (c === ';') {
      i++;
      push('semicolon', start, i);
    } else if (c === '(') {
      i++;
      push('open', start, i);
    } else if (c === ')') {
      i++;
      push('close', start, i);
    } else {
      i++;
      push('other', start, i);
    }
  }
  return tokens;
}

function quotedEnd(sql: string, from: number): number {
  let j = from;
  while (j < sql.length) {
    if (sql[j] === '"' && sql[j + 1] === '"') j += 2;
    else if (sql[j] === '"') return j + 1;
    else j++;
  }
  return sql.length;
}

/** One statement of a string: its text (trimmed) and its tokens (without leading and trailing space or comments). */
export interface Statement {
  text: string;
  tokens: Token[];
}

/**
 * The statements of a client string, split at semicolons outside quotes, comments, parentheses and
 * SQL-standard function bodies (`CREATE FUNCTION … BEGIN ATOMIC …; … END`, as psql splits them);
 * empty ones left out.
 */
export function splitStatements(sql: string, options: LexOptions = {}): Statement[] {
  const statements: Statement[] = [];
  let current: Token[] = [];
  /** Words seen so far in the statement (up to a few), and the nesting inside BEGIN ATOMIC … END. */
  let words: string[] = [];
  let atomic = 0;
  const finish = (): void => {
    const meaningful = current.filter((t) => t.kind !== 'space' && t.kind !== 'comment');
    const first = meaningful[0];
    const last = meaningful[meaningful.length - 1];
    if (first && last) {
      const tokens = current.filter((t) => t.start >= first.start && t.end <= last.end);
      statements.push({
        text: sql.slice(first.start, last.end),
        tokens: tokens.map((t) => ({ ...t, start: t.start - first.start, end: t.end - first.start })),
      });
    }
    current = [];
    words = [];
    atomic = 0;
  };
  for (const token of tokenize(sql, options)) {
    if (token.kind === 'semicolon' && token.depth === 0 && atomic === 0) {
      finish();
      continue;
    }
    current.push(token);
    if (token.kind !== 'word') continue;
    const previous = words[words.length - 1];
    words.push(token.upper);
    if (atomic > 0) {
      if (token.upper === 'CASE' || (token.upper === 'ATOMIC' && previous === 'BEGIN')) atomic++;
      else if (token.upper === 'END') atomic--;
    } else if (token.upper === 'ATOMIC' && previous === 'BEGIN' && isRoutineDefinition(words)) atomic = 1;
  }
  finish();
  return statements;
}

function isRoutineDefinition(words: readonly string[]): boolean {
  if (words[0] !== 'CREATE') return false;
  const object = words[1] === 'OR' && words[2] === 'REPLACE' ? words[3] : words[1];
  return object === 'FUNCTION' || object === 'PROCEDURE';
}

/** The statement's words and other meaningful tokens, without space and comments. */
export function meaningfulTokens(statement: Statement): Token[] {
  return statement.tokens.filter((t) => t.kind !== 'space' && t.kind !== 'comment');
}

const CREATE_MODIFIERS = new Set(['OR', 'REPLACE', 'TEMP', 'TEMPORARY', 'LOCAL', 'GLOBAL', 'UNLOGGED', 'UNIQUE', 'TRUSTED', 'PROCEDURAL', 'RECURSIVE']);
/** Objects whose name in a command tag has two or three words. */
const MULTI_WORD_OBJECTS: readonly string[][] = [
  ['MATERIALIZED', 'VIEW'],
  ['FOREIGN', 'TABLE'],
  ['FOREIGN', 'DATA', 'WRAPPER'],
  ['EVENT', 'TRIGGER'],
  ['USER', 'MAPPING'],
  ['ACCESS', 'METHOD'],
  ['OPERATOR', 'CLASS'],
  ['OPERATOR', 'FAMILY'],
  ['TEXT', 'SEARCH', 'CONFIGURATION'],
  ['TEXT', 'SEARCH', 'DICTIONARY'],
  ['TEXT', 'SEARCH', 'PARSER'],
  ['TEXT', 'SEARCH', 'TEMPLATE'],
  ['DEFAULT', 'PRIVILEGES'],
];

/**
 * The command tag PostgreSQL gives a statement (what an event trigger sees in TG_TAG), for the statements
 * event triggers can fire for; `undefined` when the statement is not one of those verbs.
 */
export function commandTag(statement: Statement): string | undefined {
  const tokens = meaningfulTokens(statement);
  const words: string[] = [];
  for (const t of tokens) {
    if (t.kind !== 'word') break;
    words.push(t.upper);
  }
  const verb = words[0];
  if (verb === undefined) return undefined;
  const objectAt = (from: number): string | undefined => {
    for (const phrase of MULTI_WORD_OBJECTS) if (phrase.every((w, k) => words[from + k] === w)) return phrase.join(' ');
    return words[from];
  };
  switch (verb) {
    case 'CREATE': {
      let k = 1;
      while (k < words.length && CREATE_MODIFIERS.has(words[k] as string)) k++;
      if (words[k] === 'CONSTRAINT' && words[k + 1] === 'TRIGGER') return 'CREATE TRIGGER';
      if (words[k] === 'DEFAULT' && words[k + 1] === 'CONVERSION') return 'CREATE CONVERSION';
      const object = objectAt(k);
      if (object === undefined) return undefined;
      if (object === 'TABLE' && hasTopLevelWord(tokens, 'AS')) return 'CREATE TABLE AS';
      return `CREATE ${object}`;
    }
    case 'ALTER':
    case 'DROP': {
      const object = objectAt(1);
      return object === undefined ? undefined : `${verb} ${object}`;
    }
    case 'COMMENT':
    case 'GRANT':
    case 'REVOKE':
    case 'REINDEX':
      return verb;
    case 'SECURITY':
      return words[1] === 'LABEL' ? 'SECURITY LABEL' : undefined;
    case 'IMPORT':
      return 'IMPORT FOREIGN SCHEMA';
    case 'REFRESH':
      return 'REFRESH MATERIALIZED VIEW';
    case 'SELECT':
    case 'WITH':
      return hasTopLevelWord(tokens, 'INTO') && !hasTopLevelWord(tokens, 'INSERT') ? 'SELECT INTO' : undefined;
    default:
      return undefined;
  }
}

function hasTopLevelWord(tokens: readonly Token[], word: string): boolean {
  return tokens.some((t) => t.kind === 'word' && t.depth === 0 && t.upper === word);
}

const GLOBAL_OBJECTS = new Set(['DATABASE', 'ROLE', 'USER', 'GROUP', 'TABLESPACE', 'EVENT TRIGGER', 'SYSTEM', 'SUBSCRIPTION']);

/**
 * Whether PostgreSQL fires ddl_command_end for the statement: DDL on objects of a database, not on
 * cluster-wide ones (databases, roles, tablespaces), not role membership (GRANT role TO user),
 * not REINDEX before PostgreSQL 17.
 */
export function firesDdlCommandEnd(statement: Statement, serverVersionNum = 150000): boolean {
  const tag = commandTag(statement);
  if (tag === undefined) return false;
  const words = meaningfulTokens(statement).filter((t) => t.kind === 'word' && t.depth === 0);
  const object = tag.split(' ').slice(1).join(' ');
  if ((tag.startsWith('CREATE ') || tag.startsWith('ALTER ') || tag.startsWith('DROP ')) && GLOBAL_OBJECTS.has(object)) return false;
  if (tag === 'GRANT' || tag === 'REVOKE') {
    const on = words.findIndex((t) => t.upper === 'ON');
    if (on === -1) return false; // role membership
    const target = words[on + 1]?.upper;
    return target !== 'DATABASE' && target !== 'TABLESPACE' && target !== 'PARAMETER';
  }
  if (tag === 'COMMENT' || tag === 'SECURITY LABEL') {
    const on = words.findIndex((t) => t.upper === 'ON');
    const target = words[on + 1]?.upper;
    return target !== 'DATABASE' && target !== 'ROLE' && target !== 'TABLESPACE';
  }
  if (tag === 'REINDEX') return serverVersionNum >= 170000;
  return true;
}

/**
 * The statement without the first top-level occurrence of `keyword` (a word, not inside quotes or
 * parentheses), spaces around it collapsed; the statement itself when there is none.
 */
export function withoutKeyword(statement: Statement, keyword: string): string {
  const token = statement.tokens.find((t) => t.kind === 'word' && t.depth === 0 && t.upper === keyword);
  if (!token) return statement.text;
  const before = statement.text.slice(0, token.start).replace(/\s+$/, '');
  const after = statement.text.slice(token.end).replace(/^\s+/, '');
  return after === '' ? before : `${before} ${after}`;
}
