/** What a refusal's restore command is built from: the repository undo read, and where to restore. */
export interface RestoreHintContext {
  /** The repository as the user named it (--repo), or its location; several when several were given (each gets a --repo). */
  repo: string | readonly string[];
  /** The archived database's URL (undo's --source), whose server the side database goes on; its password is left out. */
  sourceUrl?: string;
  /** The archived database's name (from the repository's identity), for the side database's name. */
  database?: string;
}

/**
 * A complete `pitr restore` command that brings back the rows as they were just before transaction
 * `xid` (`--exclusive`: the transaction itself is not applied), into a new side database, so the
 * hint works when copied as it is. Without a source URL the side database is on the server the
 * libpq environment names (PGHOST, PGPORT, PGUSER), as `postgresql:///NAME` means for libpq.
 */
export function restoreBeforeCommand(context: RestoreHintContext, xid: number, tables?: readonly string[]): string {
  const side = `${context.database ?? 'restored'}_before_${xid}`;
  let target = `postgresql:///${side}`;
  if (context.sourceUrl) {
    try {
      const url = new URL(context.sourceUrl);
      url.password = '';
      url.pathname = `/${encodeURIComponent(side)}`;
      target = url.toString();
    } catch {
      // not a URL: keep the libpq environment's server
    }
  }
  const repos = typeof context.repo === 'string' ? [context.repo] : context.repo;
  const words = ['pitr', 'restore', ...repos.flatMap((repo) => ['--repo', repo]), '--target', target, '--to', `xid:${xid}`, '--exclusive'];
  if (tables && tables.length > 0) words.push('--tables', tables.join(','));
  return words.map(quoteShellWord).join(' ');
}

/** A word as a POSIX shell reads it back unchanged: bare when it holds no special character, else single-quoted. */
function quoteShellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}
