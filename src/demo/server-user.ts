import { spawnSync } from 'node:child_process';
import { chownSync } from 'node:fs';
import { PitrError } from '../errors';

/**
 * Who runs initdb, pg_ctl and postgres. PostgreSQL refuses to run as root, so as root they run as the
 * "postgres" user through `runuser -u postgres --`; otherwise as the current user.
 */
export interface ServerUser {
  /** null when the programs run as the current user. */
  name: string | null;
  /** The program and arguments to spawn for `program args...`. */
  command(program: string, args: readonly string[]): { file: string; args: string[] };
  /** Gives a file or directory to that user (a no-op when it is the current user). */
  own(file: string): void;
}

const SELF: ServerUser = {
  name: null,
  command: (program, args) => ({ file: program, args: [...args] }),
  own: () => undefined,
};

function idOf(flag: '-u' | '-g', user: string): number | undefined {
  const result = spawnSync('id', [flag, user], { encoding: 'utf8' });
  return result.status === 0 ? Number(result.stdout.trim()) : undefined;
}

export function serverUser(isRoot: boolean = process.getuid?.() === 0, user = 'postgres'): ServerUser {
  if (!isRoot) return SELF;
  const uid = idOf('-u', user);
  const gid = idOf('-g', user);
  if (uid === undefined || gid === undefined)
    throw new PitrError(
      'Usage',
      `running as root and there is no "${user}" user to run postgresql as (the server refuses to run as root)`,
      `run "pitr demo" as an ordinary user, or create the user: useradd --system --create-home ${user} (the Debian postgresql package creates it)`,
    );
  if (spawnSync('runuser', ['--version']).error)
    throw new PitrError(
      'MissingTool',
      'runuser not found: needed to run postgresql as the postgres user when running as root',
      'install util-linux, or run "pitr demo" as an ordinary user',
    );
  return {
    name: user,
    command: (program, args) => ({ file: 'runuser', args: ['-u', user, '--', program, ...args] }),
    own: (file) => chownSync(file, uid, gid),
  };
}
