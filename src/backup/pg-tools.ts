import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { PitrError } from '../errors';

const execFileAsync = promisify(execFile);

export interface PgTool {
  path: string;
  major: number;
  version: string;
}

function candidates(tool: string, serverMajor: number): string[] {
  const found: string[] = [];
  const debian = '/usr/lib/postgresql';
  // the server's own major first, then newer ones, then whatever PATH has
  if (existsSync(debian)) {
    const majors = readdirSync(debian)
      .map(Number)
      .filter((m) => m >= serverMajor)
      .sort((a, b) => a - b);
    for (const major of majors) found.push(path.join(debian, String(major), 'bin', tool));
  }
  for (const brew of ['/opt/homebrew/bin', '/usr/local/opt/libpq/bin', '/opt/homebrew/opt/libpq/bin']) found.push(path.join(brew, tool));
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir) found.push(path.join(dir, tool));
  return found.filter((file) => existsSync(file));
}

async function versionOf(file: string): Promise<PgTool | undefined> {
  try {
    const { stdout } = await execFileAsync(file, ['--version'], { timeout: 10_000 });
    const match = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(stdout);
    if (!match) return undefined;
    return { path: file, major: Number(match[1]), version: stdout.trim() };
  } catch {
    return undefined;
  }
}

/**
 * Finds pg_dump (or pg_restore) whose major version is at least the server's, as pg_dump itself
 * requires. An explicit path is used as given, and refused clearly if it is too old.
 */
export async function findPgTool(tool: 'pg_dump' | 'pg_restore', serverMajor: number, explicit?: string): Promise<PgTool> {
  const hint = `install the PostgreSQL ${serverMajor} client programs (Debian: apt-get install postgresql-client-${serverMajor}) or pass --pg-dump /path/to/pg_dump`;
  if (explicit) {
    const file = tool === 'pg_dump' ? explicit : path.join(path.dirname(explicit), tool);
    const found = existsSync(file) ? await versionOf(file) : undefined;
    if (!found) throw new PitrError('MissingTool', `${tool} not found at ${file}`, hint);
    if (found.major < serverMajor) throw new PitrError('MissingTool', `${file} is version ${found.major}, older than the server (${serverMajor})`, hint);
    return found;
  }
  let tooOld: PgTool | undefined;
  for (const file of candidates(tool, serverMajor)) {
    const found = await versionOf(file);
    if (!found) continue;
    if (found.major >= serverMajor) return found;
    tooOld ??= found;
  }
  if (tooOld) throw new PitrError('MissingTool', `${tool} at ${tooOld.path} is version ${tooOld.major}, older than the server (${serverMajor})`, hint);
  throw new PitrError('MissingTool', `${tool} not found`, hint);
}
