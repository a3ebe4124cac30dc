import { execFile, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { PitrError, messageOf } from '../errors';
import type { PgBinaries } from './find-pg-binaries';
import { freePort } from './free-port';
import type { ServerUser } from './server-user';

const execFileAsync = promisify(execFile);

/**
 * A PostgreSQL cluster of its own in a temporary directory, on a free loopback port, configured for
 * logical decoding. Password authentication even on loopback: with --keep it outlives the demo.
 */
export class ThrowawayCluster {
  private running = false;

  private constructor(
    readonly binaries: PgBinaries,
    readonly user: ServerUser,
    readonly baseDir: string,
    readonly port: number,
    readonly password: string,
  ) {}

  get dataDir(): string {
    return path.join(this.baseDir, 'data');
  }

  get logFile(): string {
    return path.join(this.baseDir, 'postgresql.log');
  }

  /** initdb into `baseDir`/data and start the server. `baseDir` must exist and be empty. */
  static async create(binaries: PgBinaries, user: ServerUser, baseDir: string, password: string): Promise<ThrowawayCluster> {
    const cluster = new ThrowawayCluster(binaries, user, baseDir, await freePort(), password);
    const socketDir = path.join(baseDir, 'socket');
    mkdirSync(socketDir, { mode: 0o700 });
    user.own(socketDir);
    const pwFile = path.join(baseDir, 'initdb-password');
    writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
    user.own(pwFile);
    try {
      await cluster.run('initdb', [
        '-D',
        cluster.dataDir,
        '-U',
        'postgres',
        `--pwfile=${pwFile}`,
        '--auth-local=scram-sha-256',
        '--auth-host=scram-sha-256',
        '-E',
        'UTF8',
        '--locale=C',
        // a throwaway cluster: skipping initdb's fsync of every file saves seconds
        '--no-sync',
      ]);
    } finally {
      rmSync(pwFile, { force: true });
    }
    const settings = {
      port: cluster.port,
      listen_addresses: "'127.0.0.1'",
      unix_socket_directories: `'${socketDir}'`,
      wal_level: 'logical',
      max_replication_slots: 10,
      max_wal_senders: 10,
      shared_buffers: "'32MB'",
    };
    appendFileSync(
      path.join(cluster.dataDir, 'postgresql.conf'),
      '\n# pitr demo\n' +
        Object.entries(settings)
          .map(([k, v]) => `${k} = ${v}`)
          .join('\n') +
        '\n',
    );
    await cluster.start();
    return cluster;
  }

  /** The settings a reader would check first, as written to postgresql.conf. */
  describe(): string {
    return `wal_level = logical, listen_addresses = 127.0.0.1, port ${this.port}, data in ${this.dataDir}`;
  }

  url(database: string): string {
    return `postgresql://postgres@127.0.0.1:${this.port}/${database}`;
  }

  /** What a user types to run pg_ctl on this cluster (as the postgres user when we are root). */
  pgCtlCommand(action: string): string {
    const { file, args } = this.user.command(path.join(this.binaries.binDir, 'pg_ctl'), ['-D', this.dataDir, action]);
    return [file, ...args].join(' ');
  }

  async start(): Promise<void> {
    await this.run('pg_ctl', ['-D', this.dataDir, '-l', this.logFile, '-w', '-t', '60', 'start']);
    this.running = true;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    await this.run('pg_ctl', ['-D', this.dataDir, '-m', 'fast', '-w', 'stop']);
    this.running = false;
  }

  /** For process exit hooks, where nothing asynchronous runs any more. */
  stopNow(): void {
    if (!this.running || !existsSync(path.join(this.dataDir, 'postmaster.pid'))) return;
    const { file, args } = this.user.command(path.join(this.binaries.binDir, 'pg_ctl'), ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop']);
    spawnSync(file, args, { stdio: 'ignore', timeout: 30_000 });
    this.running = false;
  }

  private async run(program: string, args: string[]): Promise<void> {
    const { file, args: fullArgs } = this.user.command(path.join(this.binaries.binDir, program), args);
    try {
      await execFileAsync(file, fullArgs, { timeout: 120_000, encoding: 'utf8' });
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr?.trim();
      const log = existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-3).join(' | ') : '';
      throw new PitrError(
        'SourceConfig',
        `${program} failed for the throwaway cluster in ${this.baseDir}: ${stderr || log || messageOf(error)}`,
        existsSync(this.logFile)
          ? `see the server log ${this.logFile} (run with --keep to keep it)`
          : 'check that the PostgreSQL installation works: initdb --version',
      );
    }
  }
}
