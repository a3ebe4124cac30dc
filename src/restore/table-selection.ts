import { PitrError } from '../errors';

/** A `--tables` entry as schema.table: a bare name is a table of the public schema. */
export const qualifiedTableName = (name: string): string => (name.includes('.') ? name : `public.${name}`);

/** Edit distance between two short names (insertions, deletions, substitutions). */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row.push(Math.min((previous[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1)));
    previous = row;
  }
  return previous[b.length] ?? 0;
}

/** Known names within two edits of `name`, or with the same table name in another schema: at most three. */
export function closeMatches(name: string, known: Iterable<string>): string[] {
  const bare = name.slice(name.indexOf('.') + 1);
  return [...new Set(known)]
    .map((candidate) => ({ candidate, d: candidate.slice(candidate.indexOf('.') + 1) === bare ? 0 : distance(name, candidate) }))
    .filter(({ d }) => d <= 2)
    .sort((x, y) => x.d - y.d || x.candidate.localeCompare(y.candidate))
    .slice(0, 3)
    .map(({ candidate }) => candidate);
}

/**
 * Refuses `--tables` entries that name no table of the backup or the archive, before anything is
 * restored: a misspelt name would otherwise restore nothing for it and succeed. `known` holds the
 * backup's and the archive's tables; `inSchemaDump` answers for the names `known` lacks (a
 * partitioned parent holds no rows, so only the backup's schema knows it).
 */
export async function checkTableSelection(
  requested: readonly string[],
  known: ReadonlySet<string>,
  inSchemaDump: (names: string[]) => Promise<Set<string>>,
): Promise<void> {
  const unknown = [...new Set(requested.map(qualifiedTableName))].filter((name) => !known.has(name));
  if (unknown.length === 0) return;
  const inDump = await inSchemaDump(unknown);
  const missing = unknown.filter((name) => !inDump.has(name));
  const [first] = missing;
  if (first === undefined) return;
  const matches = closeMatches(first, known);
  throw new PitrError(
    'Usage',
    `restore: --tables names ${missing.length === 1 ? 'a table' : 'tables'} that neither the backup nor the archive up to the target holds: ${missing.join(', ')}`,
    (matches.length > 0 ? `did you mean ${matches.join(' or ')}? ` : '') +
      '--tables takes schema.table (a bare name means public.name); "pitr log --table NAME" shows which tables the archive changed',
  );
}
