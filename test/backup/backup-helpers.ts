import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';

/** Every regular file under `dir`, as '/'-separated paths relative to it (empty when `dir` is absent). */
export function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const entry of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(child);
      else out.push(child);
    }
  };
  walk('');
  return out.sort();
}

/** Objects of the repository under backups/ (the repository's own staging dir .tmp is not an object). */
export function backupObjects(repoDir: string): string[] {
  return filesUnder(path.join(repoDir, 'backups')).map((f) => `backups/${f}`);
}

/** Files named manifest.json anywhere in the repository. */
export function manifestsIn(repoDir: string): string[] {
  return filesUnder(repoDir).filter((f) => path.posix.basename(f) === 'manifest.json');
}

/** Runs `fn` with a client that returns every value as the raw text the server sent. */
export async function withRawClient<T>(url: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Rows of a query as arrays of raw server text (null for NULL), with no JS parsing at all. */
export async function rawRows(client: Client, sql: string): Promise<(string | null)[][]> {
  const result = await client.query<(string | null)[]>({ text: sql, rowMode: 'array', types: { getTypeParser: () => (value: string) => value } });
  return result.rows;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every `everyMs` until it returns a value other than undefined. */
export async function waitUntil<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
