import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Repository } from '../../src/archive/repository';
import { readTransactions, type ArchivedTransaction } from '../../src/archive/transaction-reader';
import { LocalStorage } from '../../src/storage/local/local-storage';
import { PgCluster, type ClusterOptions } from './pg-cluster';
import { PitrProcess, runPitr, type RunResult } from './pitr-process';

/** A source cluster plus a local repository, with helpers to run pitr against them. */
export class ArchiveFixture {
  private constructor(
    readonly cluster: PgCluster,
    readonly repoDir: string,
  ) {}

  static async create(options: ClusterOptions = {}): Promise<ArchiveFixture> {
    const cluster = await PgCluster.start(options);
    return new ArchiveFixture(cluster, mkdtempSync(path.join(tmpdir(), 'pitr-repo-')));
  }

  get source(): string {
    return this.cluster.url('postgres');
  }

  /** Fast sealing and heartbeats so tests see their data quickly. */
  archiveArgs(extra: string[] = []): string[] {
    return ['archive', '--source', this.source, '--repo', this.repoDir, '--segment-age', '200ms', '--heartbeat', '1s', '--log-level', 'debug', ...extra];
  }

  init(extra: string[] = []): Promise<RunResult> {
    return runPitr(['init', '--source', this.source, '--repo', this.repoDir, ...extra]);
  }

  /** A base backup of the source, taken now. */
  backup(extra: string[] = []): Promise<RunResult> {
    return runPitr(['backup', '--source', this.source, '--repo', this.repoDir, '--log-level', 'warn', ...extra]);
  }

  startArchiver(extra: string[] = [], env: NodeJS.ProcessEnv = {}): PitrProcess {
    return new PitrProcess(this.archiveArgs(extra), env);
  }

  repository(): Repository {
    return new Repository(new LocalStorage(this.repoDir));
  }

  async transactions(): Promise<ArchivedTransaction[]> {
    const all: ArchivedTransaction[] = [];
    for await (const txn of readTransactions(this.repository())) all.push(txn);
    return all;
  }

  /**
   * Waits until the slot's confirmed position reaches everything committed so far. The insert position,
   * not the write position: with synchronous_commit off a commit record may not be written yet.
   */
  async waitCaughtUp(timeoutMs = 30_000): Promise<void> {
    const [{ lsn }] = (await this.cluster.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')) as [{ lsn: string }];
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const rows = await this.cluster.query<{ ok: boolean }>(
        "SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = 'pitr'",
        [lsn],
      );
      if (rows[0]?.ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`slot did not reach ${lsn} in ${timeoutMs} ms`);
  }

  async destroy(): Promise<void> {
    await this.cluster.destroy();
    rmSync(this.repoDir, { recursive: true, force: true });
  }
}

/** Text of a decoded value, null for NULL, undefined for an unchanged TOAST value. */
export function valueText(value: { kind: string; value?: unknown } | undefined): string | null | undefined {
  if (!value || value.kind === 'unchanged') return undefined;
  if (value.kind === 'null') return null;
  return String(value.value);
}
