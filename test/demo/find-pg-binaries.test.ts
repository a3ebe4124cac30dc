import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { findPgBinaries, type PgBinarySearch } from '../../src/demo/find-pg-binaries';
import { shellQuote } from '../../src/demo/demo-narrator';
import { serverUser } from '../../src/demo/server-user';
import { PitrError } from '../../src/errors';

let root: string;

/** A fake install: initdb and pg_ctl that do nothing, and a postgres that reports `version`. */
function fakeInstall(dir: string, version: string): string {
  const bin = path.join(root, dir);
  mkdirSync(bin, { recursive: true });
  for (const program of ['initdb', 'pg_ctl']) writeFileSync(path.join(bin, program), '#!/bin/sh\nexit 0\n');
  writeFileSync(path.join(bin, 'postgres'), `#!/bin/sh\necho "postgres (PostgreSQL) ${version}"\n`);
  for (const program of ['initdb', 'pg_ctl', 'postgres']) chmodSync(path.join(bin, program), 0o755);
  return bin;
}

const search = (extra: Partial<PgBinarySearch> = {}): PgBinarySearch => ({ pathDirs: [], pgConfig: null, root, ...extra });

function thrown(fn: () => unknown): PitrError {
  try {
    fn();
  } catch (error) {
    if (error instanceof PitrError) return error;
    throw error;
  }
  throw new Error('expected a PitrError');
}

beforeEach(() => {
  root = realpathSync(mkdtempSync(path.join(tmpdir(), 'pitr-fake-root-')));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('findPgBinaries', () => {
  test('takes the newest Debian major', () => {
    fakeInstall('usr/lib/postgresql/14/bin', '14.9');
    const newest = fakeInstall('usr/lib/postgresql/16/bin', '16.4 (Debian 16.4-1)');
    expect(findPgBinaries(search())).toEqual({ binDir: newest, version: '16.4 (Debian 16.4-1)', major: 16, foundBy: 'Debian layout' });
  });

  test('finds Homebrew kegs on Apple silicon and Intel', () => {
    const arm = fakeInstall('opt/homebrew/opt/postgresql@15/bin', '15.8 (Homebrew)');
    expect(findPgBinaries(search())).toMatchObject({ binDir: arm, major: 15, foundBy: 'Homebrew' });
    rmSync(path.join(root, 'opt'), { recursive: true });
    const intel = fakeInstall('usr/local/opt/postgresql@17/bin', '17.0');
    expect(findPgBinaries(search())).toMatchObject({ binDir: intel, major: 17, foundBy: 'Homebrew' });
  });

  test('PATH comes first, then pg_config --bindir, then the usual places', () => {
    fakeInstall('usr/lib/postgresql/16/bin', '16.4');
    const onPath = fakeInstall('custom/bin', '15.2');
    expect(findPgBinaries(search({ pathDirs: ['/nonexistent', onPath] }))).toMatchObject({ binDir: onPath, foundBy: 'PATH' });
    const pgConfig = path.join(root, 'pg_config');
    writeFileSync(pgConfig, `#!/bin/sh\necho ${onPath}\n`, { mode: 0o755 });
    expect(findPgBinaries(search({ pgConfig }))).toMatchObject({ binDir: onPath, foundBy: 'pg_config --bindir' });
  });

  test('--pg-bin searches only the directories given', () => {
    fakeInstall('usr/lib/postgresql/16/bin', '16.4');
    const given = fakeInstall('elsewhere/bin', '14.11');
    expect(findPgBinaries(search({ explicitDirs: [given] }))).toMatchObject({ binDir: given, foundBy: '--pg-bin' });
    const error = thrown(() => findPgBinaries(search({ explicitDirs: [path.join(root, 'nothing')] })));
    expect(error.message).toBe(`no postgresql server programs (initdb, pg_ctl, postgres) found in ${path.join(root, 'nothing')}`);
  });

  test('nothing found: exit 8 with the install commands', () => {
    const error = thrown(() => findPgBinaries(search()));
    expect(error.kind).toBe('MissingTool');
    expect(error.exitCode).toBe(8);
    expect(error.message).toBe(
      'no postgresql server programs (initdb, pg_ctl, postgres) found in PATH, pg_config --bindir, /usr/lib/postgresql/*/bin or Homebrew',
    );
    expect(error.hint).toContain('Debian/Ubuntu: sudo apt-get install postgresql');
    expect(error.hint).toContain('macOS: brew install postgresql@16');
  });

  test('a server older than 14 is refused, naming it', () => {
    const old = fakeInstall('usr/lib/postgresql/13/bin', '13.16');
    const error = thrown(() => findPgBinaries(search()));
    expect(error.kind).toBe('MissingTool');
    expect(error.message).toBe(`postgresql 13.16 in ${old} is too old: pitr needs 14 or newer`);
  });
});

describe('demo helpers', () => {
  test('as root without a postgres user, the demo explains what to do', () => {
    const error = thrown(() => serverUser(true, 'pitr-no-such-user'));
    expect(error.kind).toBe('Usage');
    expect(error.message).toBe('running as root and there is no "pitr-no-such-user" user to run postgresql as (the server refuses to run as root)');
    expect(error.hint).toContain('useradd --system --create-home pitr-no-such-user');
  });

  test('commands are shown quoted the way a shell needs them', () => {
    expect(shellQuote('postgresql://postgres@127.0.0.1:5432/shop')).toBe('postgresql://postgres@127.0.0.1:5432/shop');
    expect(shellQuote('CREATE DATABASE shop')).toBe("'CREATE DATABASE shop'");
    expect(shellQuote("DELETE FROM orders WHERE status = 'shipped'")).toBe(`"DELETE FROM orders WHERE status = 'shipped'"`);
    expect(shellQuote("\\copy (SELECT * FROM t WHERE s = 'x') TO STDOUT")).toBe(`"\\copy (SELECT * FROM t WHERE s = 'x') TO STDOUT"`);
    expect(shellQuote(`it's $HOME`)).toBe(`'it'\\''s $HOME'`);
  });
});
