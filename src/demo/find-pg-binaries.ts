import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { PitrError } from '../errors';

/** The server programs a throwaway cluster needs; pg_dump and pg_restore usually sit beside them. */
const SERVER_PROGRAMS = ['initdb', 'pg_ctl', 'postgres'] as const;

/** The oldest server pitr archives (pgoutput messages need 14). */
export const MIN_SERVER_MAJOR = 14;

/**
 * Where to look, in order. Injectable so tests can point every place at a fake root.
 *   explicitDirs: when set, only these directories are searched (the `--pg-bin` option).
 *   pathDirs:     the directories of PATH.
 *   pgConfig:     the pg_config program to ask for --bindir (null: do not ask).
 *   root:         prefix of the well-known install places (Debian, Homebrew); "/" on a real machine.
 */
export interface PgBinarySearch {
  explicitDirs?: readonly string[];
  pathDirs: readonly string[];
  pgConfig: string | null;
  root: string;
}

export interface PgBinaries {
  binDir: string;
  /** e.g. "15.18 (Debian 15.18-0+deb12u1)". */
  version: string;
  major: number;
  /** How it was found, for the user: "PATH", "pg_config --bindir", "Debian layout", ... */
  foundBy: string;
}

export function defaultPgSearch(env: NodeJS.ProcessEnv = process.env): PgBinarySearch {
  return { pathDirs: (env.PATH ?? '').split(path.delimiter).filter(Boolean), pgConfig: 'pg_config', root: '/' };
}

export const PG_INSTALL_HINT =
  'install the PostgreSQL server programs (initdb, pg_ctl, postgres): ' +
  'Debian/Ubuntu: sudo apt-get install postgresql; macOS: brew install postgresql@16; ' +
  'or point --pg-bin (PITR_PG_BIN) at the directory holding them';

/** Version directories under `parent` (e.g. "15" or "postgresql@16"), newest major first. */
function versionedDirs(parent: string, pattern: RegExp): string[] {
  if (!existsSync(parent)) return [];
  return readdirSync(parent)
    .map((name) => ({ name, major: Number(pattern.exec(name)?.[1] ?? NaN) }))
    .filter((entry) => Number.isFinite(entry.major))
    .sort((a, b) => b.major - a.major)
    .map((entry) => path.join(parent, entry.name));
}

/** The usual install places under `root`, each with how a user would recognise it. */
export function wellKnownDirs(root: string): { dir: string; foundBy: string }[] {
  const at = (...parts: string[]): string => path.join(root, ...parts);
  return [
    ...versionedDirs(at('usr/lib/postgresql'), /^(\d+)$/).map((d) => ({ dir: path.join(d, 'bin'), foundBy: 'Debian layout' })),
    ...versionedDirs(at('opt/homebrew/opt'), /^postgresql@(\d+)$/).map((d) => ({ dir: path.join(d, 'bin'), foundBy: 'Homebrew' })),
    ...versionedDirs(at('usr/local/opt'), /^postgresql@(\d+)$/).map((d) => ({ dir: path.join(d, 'bin'), foundBy: 'Homebrew' })),
    { dir: at('opt/homebrew/bin'), foundBy: 'Homebrew' },
  ];
}

function hasServerPrograms(dir: string): boolean {
  return SERVER_PROGRAMS.every((program) => existsSync(path.join(dir, program)));
}

function serverVersion(binDir: string): { version: string; major: number } | undefined {
  const result = spawnSync(path.join(binDir, 'postgres'), ['--version'], { encoding: 'utf8', timeout: 10_000 });
  const match = /\(PostgreSQL\)\s+((\d+)\S*(?:\s.*)?)$/m.exec(result.stdout ?? '');
  return match ? { version: (match[1] as string).trim(), major: Number(match[2]) } : undefined;
}

function candidates(search: PgBinarySearch): { dir: string; foundBy: string }[] {
  if (search.explicitDirs) return search.explicitDirs.map((dir) => ({ dir, foundBy: '--pg-bin' }));
  const found = search.pathDirs.map((dir) => ({ dir, foundBy: 'PATH' }));
  if (search.pgConfig) {
    const asked = spawnSync(search.pgConfig, ['--bindir'], { encoding: 'utf8', timeout: 10_000 });
    if (asked.status === 0 && asked.stdout.trim()) found.push({ dir: asked.stdout.trim(), foundBy: 'pg_config --bindir' });
  }
  return [...found, ...wellKnownDirs(search.root)];
}

/**
 * Finds a directory holding initdb, pg_ctl and postgres of a supported major version. A PATH entry that
 * is a symlink farm (e.g. /usr/local/bin -> /usr/lib/postgresql/15/bin) resolves to the real directory,
 * where pg_dump and pg_restore of the same version live too.
 */
export function findPgBinaries(search: PgBinarySearch = defaultPgSearch()): PgBinaries {
  let tooOld: PgBinaries | undefined;
  for (const { dir, foundBy } of candidates(search)) {
    if (!hasServerPrograms(dir)) continue;
    const binDir = path.dirname(realpathSync(path.join(dir, 'initdb')));
    const version = serverVersion(binDir);
    if (!version) continue;
    const found = { binDir, foundBy, ...version };
    if (found.major >= MIN_SERVER_MAJOR) return found;
    tooOld ??= found;
  }
  if (tooOld)
    throw new PitrError('MissingTool', `postgresql ${tooOld.version} in ${tooOld.binDir} is too old: pitr needs ${MIN_SERVER_MAJOR} or newer`, PG_INSTALL_HINT);
  const where = search.explicitDirs ? search.explicitDirs.join(', ') : 'PATH, pg_config --bindir, /usr/lib/postgresql/*/bin or Homebrew';
  throw new PitrError('MissingTool', `no postgresql server programs (initdb, pg_ctl, postgres) found in ${where}`, PG_INSTALL_HINT);
}
