/**
 * Points in time of a source, recorded as a workload runs, and restores compared with them: every
 * table's rows (fingerprints) and the schema (pg_dump --schema-only, pitr's own objects left out).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Client } from 'pg';
import type { ArchiveFixture } from './archive-fixture';
import { fingerprint, listUserTables, type Fingerprints } from './fingerprint';
import { describeDifference, databaseRows, restoreOk, shellLine } from '../restore/restore-helpers';

const execFileAsync = promisify(execFile);

export interface RecordedPoint {
  name: string;
  /** Source clock right after the step committed (UTC, microseconds). */
  time: string;
  lsn: string;
  tables: Fingerprints;
  rows: Record<string, string[]>;
  schema: string;
}

/** The schema of a database as pg_dump prints it, without what only a source or only a restore has. */
export async function schemaOf(fx: ArchiveFixture, database: string): Promise<string> {
  const { stdout } = await execFileAsync(
    path.join(fx.cluster.binDir, 'pg_dump'),
    ['--schema-only', '--exclude-schema=pitr', '--no-publications', '--no-subscriptions', '--dbname', fx.cluster.url(database)],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  // entries are separated by "--\n-- Name: …; Type: …; Schema: …" headers
  const entries = stdout.split(/\n(?=--\n-- (?:Name: |Data for Name: |PostgreSQL database dump complete))/);
  return entries
    .filter((entry) => !/^--\n-- Name: [^\n]*; Type: EVENT TRIGGER;/.test(entry))
    .join('\n')
    .split('\n')
    .filter((line) => !/^\\(un)?restrict /.test(line) && !/^-- Dumped (from|by) /.test(line))
    .join('\n');
}

/** The lines of two texts that differ, as a diff would show them (for failure messages). */
export async function textDiff(expected: string, actual: string): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'pitr-diff-'));
  try {
    writeFileSync(path.join(dir, 'source'), expected);
    writeFileSync(path.join(dir, 'restored'), actual);
    const result = await execFileAsync('diff', ['-u', 'source', 'restored'], { cwd: dir }).catch((error: { stdout?: string }) => ({
      stdout: error.stdout ?? '',
    }));
    return result.stdout.split('\n').slice(0, 80).join('\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export class PointRecorder {
  readonly points: RecordedPoint[] = [];

  constructor(
    private readonly fx: ArchiveFixture,
    private readonly database = 'postgres',
  ) {}

  /** Records the source as it is now (what is committed), through a session of its own. */
  async record(name: string): Promise<RecordedPoint> {
    return this.fx.cluster.withClient((client) => this.recordThrough(client, name), this.database);
  }

  private async recordThrough(client: Client, name: string): Promise<RecordedPoint> {
    const { rows } = await client.query<{ time: string; lsn: string }>(
      `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS time, pg_current_wal_insert_lsn()::text AS lsn`,
    );
    const { time, lsn } = rows[0] as { time: string; lsn: string };
    const tables = await listUserTables(client);
    const point: RecordedPoint = {
      name,
      time,
      lsn,
      tables: await fingerprint(client, tables),
      rows: await databaseRows(this.fx.cluster.url(this.database)),
      schema: await schemaOf(this.fx, this.database),
    };
    this.points.push(point);
    return point;
  }
}

/**
 * Restores to the point's time into `db` and says how the result differs from the source then, in
 * rows and in schema; an empty string when it is identical.
 */
export async function restoreDifference(fx: ArchiveFixture, point: RecordedPoint, db: string, extra: string[] = []): Promise<string> {
  const run = await restoreOk(fx, db, point.time, extra);
  const restored = await fx.cluster.withClient(async (client) => fingerprint(client, await listUserTables(client)), db);
  const problems: string[] = [];
  if (JSON.stringify(sorted(restored)) !== JSON.stringify(sorted(point.tables)))
    problems.push(`rows differ:\n${describeDifference(point.tables, restored, point.rows, await databaseRows(fx.cluster.url(db)))}`);
  const schema = await schemaOf(fx, db);
  if (schema !== point.schema) problems.push(`schema differs (pg_dump --schema-only, - source, + restored):\n${await textDiff(point.schema, schema)}`);
  if (problems.length === 0) return '';
  return `${shellLine(run.args)}\nrestored "${db}" differs from the source at "${point.name}" (${point.time}, ${point.lsn}):\n${problems.join('\n')}`;
}

function sorted(fp: Fingerprints): [string, unknown][] {
  return Object.entries(fp).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
