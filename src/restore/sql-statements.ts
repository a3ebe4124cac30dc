/**
 * Splits a client query string into its statements, the way PostgreSQL's lexer sees semicolons:
 * not inside quotes ('…', E'…' with backslash escapes, "…"), dollar quotes ($tag$…$tag$), or
 * comments (-- and nested /* *\/).
 */
export function splitStatements(sql: string): string[] {
  const statements: string[] = [];
  let start = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i] as string;
    const next = sql[i + 1];
    if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? n : end + 1;
    } else if (c === '/' && next === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      }
    } else if (c === "'") {
      const escapes = i > 0 && /[eE]/.test(sql[i - 1] as string) && (i < 2 || !/[\w$]/.test(sql[i - 2] as string));
      i++;
      while (i < n) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === "'" && sql[i + 1] === "'") i += 2;
        else if (sql[i] === "'") break;
        else i++;
      }
      i++;
    } else if (c === '"') {
      i++;
      while (i < n && !(sql[i] === '"' && sql[i + 1] !== '"')) i += sql[i] === '"' ? 2 : 1;
      i++;
    } else if (c === '$' && (i === 0 || !/[\w$]/.test(sql[i - 1] as string))) {
      const tag = /^\$([A-Za-z_][A-Za-z_0-9]*)?\$/.exec(sql.slice(i));
      if (tag) {
        const close = sql.indexOf(tag[0], i + tag[0].length);
        i = close === -1 ? n : close + tag[0].length;
      } else i++;
    } else if (c === ';') {
      statements.push(sql.slice(start, i));
      i++;
      start = i;
    } else i++;
  }
  statements.push(sql.slice(start));
  return statements.map((s) => s.trim()).filter((s) => s.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, '').trim() !== '');
}

/** Statements that fire ddl_command_end (what the capture trigger counts): DDL on objects of a database. */
export function firesDdlTrigger(statement: string): boolean {
  const text = statement.replace(/^(\s|--[^\n]*\n|\/\*[\s\S]*?\*\/)+/, '').toUpperCase();
  if (!/^(CREATE|ALTER|DROP|COMMENT|GRANT|REVOKE|SECURITY\s+LABEL|IMPORT\s+FOREIGN|REFRESH\s+MATERIALIZED)\b/.test(text)) return false;
  return !/^(CREATE|ALTER|DROP)\s+(DATABASE|ROLE|USER|GROUP|TABLESPACE|EVENT\s+TRIGGER|SYSTEM)\b/.test(text) && !/^ALTER\s+SYSTEM\b/.test(text);
}

/** The statement of `query` that fired the capture trigger the `index`-th time (0-based), or the whole query. */
export function capturedStatement(query: string, index: number): string {
  const statements = splitStatements(query);
  if (statements.length <= 1) return query;
  const ddl = statements.filter(firesDdlTrigger);
  return ddl[index] ?? query;
}
