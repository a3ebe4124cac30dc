import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, appendFileSync, writeFileSync, chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { findPgBinaries } from '../../src/demo/find-pg-binaries';
import { freePort } from '../../src/demo/free-port';

const execFileAsync = promisify(execFile);

/** Directory holding initdb, pg_ctl and postgres: found the way `pitr demo` finds them. */
export function findPgBinDir(): string {
  return findPgBinaries().binDir;
}

export { freePort };

const asRoot = process.getuid?.() === 0;

/** Runs a PostgreSQL binary, as the postgres user when we are root (the server refuses to run as root). */
async function runPg(bin: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const [cmd, fullArgs] = asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  const { stdout } = await execFileAsync(cmd, fullArgs, { timeout: timeoutMs, encoding: 'utf8' });
  return stdout;
}

export interface ClusterOptions {
  /** Extra postgresql.conf lines. */
  settings?: Record<string, string | number>;
  /** Password for the postgres role; host connections then need it (scram-sha-256). */
  password?: string;
  walLevel?: 'logical' | 'replica';
}

/** A throwaway PostgreSQL cluster on a free loopback port. */
export class PgCluster {
  /** The harness picked `port` (not a test, through `moveToPort`): `startServer` may move off it if it is taken. */
  private portChosen = true;

  private constructor(
    readonly binDir: string,
    readonly dataDir: string,
    /** Changes through `moveToPort`, or when `startServer` loses the harness-chosen port to another process. */
    public port: number,
    readonly password: string | undefined,
  ) {}

  static async start(options: ClusterOptions = {}): Promise<PgCluster> {
    const binDir = findPgBinDir();
    const base = mkdtempSync(path.join(tmpdir(), 'pitr-pg-'));
    chmodSync(base, 0o777);
    const dataDir = path.join(base, 'data');
    const port = await freePort();
    const initArgs = ['-D', dataDir, '-U', 'postgres', '--auth-local=trust', '--no-sync', '-E', 'UTF8', '--locale=C'];
    let pwFile: string | undefined;
    if (options.password) {
      pwFile = path.join(base, 'pw');
      writeFileSync(pwFile, options.password + '\n', { mode: 0o644 });
      initArgs.push('--auth-host=scram-sha-256', `--pwfile=${pwFile}`);
    } else {
      initArgs.push('--auth-host=trust');
    }
    await runPg(path.join(binDir, 'initdb'), initArgs);
    if (pwFile) rmSync(pwFile);
    const settings: Record<string, string | number> = {
      port,
      listen_addresses: "'127.0.0.1'",
      unix_socket_directories: `'${base}'`,
      wal_level: options.walLevel ?? 'logical',
      max_replication_slots: 16,
      max_wal_senders: 16,
      fsync: 'off',
      full_page_writes: 'off',
      synchronous_commit: 'off',
      shared_buffers: "'64MB'",
      max_connections: 60,
      wal_sender_timeout: "'60s'",
      log_min_messages: 'warning',
      ...options.settings,
    };
    appendFileSync(
      path.join(dataDir, 'postgresql.conf'),
      Object.entries(settings)
        .map(([k, v]) => `${k} = ${v}`)
        .join('\n') + '\n',
    );
    if (options.password) {
      // replication connections over TCP need their own line
      appendFileSync(path.join(dataDir, 'pg_hba.conf'), 'host replication all 127.0.0.1/32 scram-sha-256\n');
    } else {
      appendFileSync(path.join(dataDir, 'pg_hba.conf'), 'host replication all 127.0.0.1/32 trust\n');
    }
    const cluster = new PgCluster(binDir, dataDir, port, options.password);
    await cluster.startServer();
    return cluster;
  }

  /**
   * A streaming standby of `primary` (pg_basebackup -R -X stream) on a free port of its own, started.
   * Its system identifier is the primary's; `promote()` makes it a primary on a new timeline.
   */
  static async standbyOf(primary: PgCluster): Promise<PgCluster> {
    const base = mkdtempSync(path.join(tmpdir(), 'pitr-pg-'));
    chmodSync(base, 0o777);
    const dataDir = path.join(base, 'data');
    await runPg(path.join(primary.binDir, 'pg_basebackup'), [
      '-D',
      dataDir,
      '-R',
      '-X',
      'stream',
      '-h',
      '127.0.0.1',
      '-p',
      String(primary.port),
      '-U',
      'postgres',
    ]);
    const standby = new PgCluster(primary.binDir, dataDir, await freePort(), primary.password);
    appendFileSync(path.join(dataDir, 'postgresql.conf'), `port = ${standby.port}\nunix_socket_directories = '${base}'\n`);
    await standby.startServer();
    return standby;
  }

  /** A byte copy of this cluster's data directory (stopped first, started again after), on a free port, not started. */
  async copy(): Promise<PgCluster> {
    await this.stopServer();
    const base = mkdtempSync(path.join(tmpdir(), 'pitr-pg-'));
    chmodSync(base, 0o777);
    const dataDir = path.join(base, 'data');
    await runPg('/bin/cp', ['-a', this.dataDir, dataDir]);
    await this.startServer();
    const copy = new PgCluster(this.binDir, dataDir, await freePort(), this.password);
    appendFileSync(path.join(dataDir, 'postgresql.conf'), `port = ${copy.port}\nunix_socket_directories = '${base}'\n`);
    return copy;
  }

  /** Restarts the server on `port` (another cluster's address, once that one is stopped). */
  async moveToPort(port: number): Promise<void> {
    await this.stopServer().catch(() => undefined);
    appendFileSync(path.join(this.dataDir, 'postgresql.conf'), `port = ${port}\n`);
    this.port = port;
    this.portChosen = false;
    await this.startServer();
  }

  /** pg_ctl promote: a standby becomes a primary on the next timeline. */
  async promote(): Promise<void> {
    await runPg(path.join(this.binDir, 'pg_ctl'), ['-D', this.dataDir, '-w', '-t', '60', 'promote']);
  }

  /** Copies a replication slot's state from a stopped cluster into this stopped one (what failover tools do for logical slots). */
  async copySlotFrom(other: PgCluster, slot: string): Promise<void> {
    await runPg('/bin/cp', ['-a', path.join(other.dataDir, 'pg_replslot', slot), path.join(this.dataDir, 'pg_replslot', slot)]);
  }

  get baseDir(): string {
    return path.dirname(this.dataDir);
  }

  url(database = 'postgres', user = 'postgres', password = this.password): string {
    const auth = password ? `${user}:${encodeURIComponent(password)}` : user;
    return `postgresql://${auth}@127.0.0.1:${this.port}/${database}`;
  }

  /**
   * pg_ctl start. A port the harness chose can be taken by another process before the server binds
   * it: the server then moves to another free port (up to 4 times). Any other failure names the
   * server log's new lines.
   */
  async startServer(): Promise<void> {
    const logFile = path.join(this.baseDir, 'log');
    for (let attempt = 1; ; attempt++) {
      const logStart = existsSync(logFile) ? statSync(logFile).size : 0;
      try {
        await runPg(path.join(this.binDir, 'pg_ctl'), ['-D', this.dataDir, '-l', logFile, '-w', '-t', '60', 'start']);
        return;
      } catch (error) {
        const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(logStart) : '';
        if (this.portChosen && attempt < 5 && /could not bind|Address already in use|could not create any TCP\/IP sockets/.test(log)) {
          this.port = await freePort();
          appendFileSync(path.join(this.dataDir, 'postgresql.conf'), `port = ${this.port}\n`);
          continue;
        }
        throw new Error(`${error instanceof Error ? error.message : String(error)}\nserver log:\n${log.slice(-4000)}`, { cause: error });
      }
    }
  }

  async stopServer(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await runPg(path.join(this.binDir, 'pg_ctl'), ['-D', this.dataDir, '-m', mode, '-w', 'stop']);
  }

  async restart(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.stopServer(mode);
    await this.startServer();
  }

  async withClient<T>(fn: (client: Client) => Promise<T>, database = 'postgres'): Promise<T> {
    const client = new Client({ connectionString: this.url(database) });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  }

  async query<R extends Record<string, unknown> = Record<string, unknown>>(sql: string, params: unknown[] = [], database = 'postgres'): Promise<R[]> {
    return this.withClient(async (client) => (await client.query<R>(sql, params)).rows, database);
  }

  /** Runs SQL through psql (multi-statement scripts, like a user would). */
  async psql(sql: string, database = 'postgres'): Promise<string> {
    const { stdout } = await execFileAsync(path.join(this.binDir, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-d', this.url(database), '-c', sql], {
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
    });
    return stdout;
  }

  /** Runs a script file through psql -f, which sends its statements one by one (as loading pg_dump output does). */
  async psqlFile(sql: string, database = 'postgres'): Promise<string> {
    const file = path.join(this.baseDir, `script-${Date.now()}-${Math.random().toString(36).slice(2)}.sql`);
    writeFileSync(file, sql);
    try {
      const { stdout } = await execFileAsync(
        path.join(this.binDir, 'psql'),
        ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-d', this.url(database), '-f', file],
        {
          encoding: 'utf8',
          maxBuffer: 256 * 1024 * 1024,
        },
      );
      return stdout;
    } finally {
      rmSync(file, { force: true });
    }
  }

  async destroy(): Promise<void> {
    try {
      await this.stopServer('immediate');
    } catch {
      // already stopped
    }
    rmSync(this.baseDir, { recursive: true, force: true });
  }
}
