/** SQL identifier quoting, as PostgreSQL's quote_ident does for any name. */
export function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/** SQL string literal (standard_conforming_strings on). */
export function quoteLiteral(value: string): string {
  return "'" + value.replace(/'/g, "''") + "'";
}

export function qualifiedName(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}
