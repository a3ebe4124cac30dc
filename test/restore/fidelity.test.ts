/**
 * Fidelity: a restore to any point of the archive is exactly the source as it was at that point.
 *
 * One source runs a seeded workload of ~25 steps (see fidelity-workload.ts) while archived; after each
 * step the source's clock, WAL position and the fingerprint of every table are recorded. Restores into
 * fresh databases of the same cluster, to many of those points and by every kind of target, must give
 * the same fingerprints, table by table (and no other tables).
 *
 * PITR_FIDELITY_SEED=<n> replays another workload.
 */
import { Client } from 'pg';
import { formatLsn, parseLsn } from '../../src/pg/lsn';
import { formatUnixMicros } from '../../src/pg/pg-time';
import { ArchiveFixture } from '../harness/archive-fixture';
import { fingerprint, listUserTables, type Fingerprints } from '../harness/fingerprint';
import { runPitr, type PitrProcess } from '../harness/pitr-process';
import { pollUntil } from '../harness/poll-until';
import { logTransactions } from '../../src/ops/log-transactions';
import { SECOND_BACKUP_AFTER, SEQUENCES, SETUP_SQL, STEPS, rng, type StepContext } from './fidelity-workload';
import {
  archiveIndex,
  databaseFingerprints,
  databaseRows,
  describeDifference,
  reportProblems,
  restoreOk,
  shellLine,
  userTablesOf,
  type RestoreRun,
  type TxnSummary,
} from './restore-helpers';

const SEED = Number(process.env.PITR_FIDELITY_SEED ?? 20261122);

interface Point {
  step: number;
  name: string;
  /** source clock right after the step committed: UTC, six fraction digits, e.g. 2026-11-22 10:41:59.123400+00 */
  time: string;
  /** pg_current_wal_insert_lsn() right after the step (not pg_current_wal_lsn(): with synchronous_commit off,
   * the commit record may not be written yet, and the write position would be before it) */
  lsn: string;
  tables: Fingerprints;
  /** row digests, for the failure message only */
  rows: Record<string, string[]>;
}

interface Backup {
  id: string;
  alignedLsn: string;
}

let fx: ArchiveFixture;
let archiver: PitrProcess | undefined;
const points: Point[] = [];
const backups: Backup[] = [];
let accidentXid = '';
let index: TxnSummary[] = [];
let sequencesAtEnd: Record<string, unknown> = {};

async function record(source: Client, step: number, name: string): Promise<void> {
  const { rows } = await source.query<{ time: string; lsn: string }>(
    `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS time, pg_current_wal_insert_lsn()::text AS lsn`,
  );
  const { time, lsn } = rows[0] as { time: string; lsn: string };
  const tables = await listUserTables(source);
  points.push({ step, name, time, lsn, tables: await fingerprint(source, tables), rows: await databaseRows(fx.source) });
}

async function takeBackup(): Promise<Backup> {
  const result = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--json', '--log-level', 'warn']);
  if (result.code !== 0) throw new Error(`pitr backup exited ${result.code}:\n${result.stderr}`);
  const { id, alignedLsn } = JSON.parse(result.stdout) as Backup;
  return { id, alignedLsn };
}

async function sequenceValues(url: string): Promise<Record<string, unknown>> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const out: Record<string, unknown> = {};
    for (const seq of SEQUENCES) out[seq] = (await client.query(`SELECT last_value::text, is_called FROM ${seq}`)).rows[0];
    return out;
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  const started = Date.now();
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(SETUP_SQL);
  const init = await fx.init(['--log-level', 'warn']);
  if (init.code !== 0) throw new Error(`pitr init failed:\n${init.stderr}`);
  archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  backups.push(await takeBackup());

  const source = new Client({ connectionString: fx.source });
  await source.connect();
  try {
    await record(source, 0, 'after the first backup');
    const ctx: StepContext = {
      client: source,
      random: rng(SEED),
      async mark(name) {
        const result = await runPitr(['mark', name, '--source', fx.source]);
        if (result.code !== 0) throw new Error(`pitr mark failed:\n${result.stderr}`);
      },
    };
    for (const [i, step] of STEPS.entries()) {
      try {
        await step.run(ctx);
      } catch (error) {
        throw new Error(`workload step ${i + 1} (${step.name}) failed with seed ${SEED}: ${(error as Error).message}`, { cause: error });
      }
      await record(source, i + 1, step.name);
      if (i + 1 === SECOND_BACKUP_AFTER) backups.push(await takeBackup());
    }
    accidentXid = ctx.accidentXid ?? '';
  } finally {
    await source.end();
  }
  // a heartbeat after the last step carries the final sequence values: wait until one is archived
  const lastStepDone = BigInt(Date.now()) * 1000n;
  await pollUntil(
    async () => (await logTransactions(fx.repository(), { since: lastStepDone })).entries.some((e) => e.heartbeat),
    (archived) => archived,
    'a heartbeat archived after the last workload step',
  );
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
  archiver = undefined;
  sequencesAtEnd = await sequenceValues(fx.source);
  index = await archiveIndex(fx);
  process.stderr.write(`fidelity: workload (seed ${SEED}) archived in ${((Date.now() - started) / 1000).toFixed(1)} s: ${index.length} transactions\n`);
}, 120_000);

afterAll(async () => {
  await archiver?.stop('SIGKILL');
  await fx?.destroy();
});

const point = (step: number): Point => {
  const p = points[step];
  if (!p) throw new Error(`no recorded point for step ${step} (the workload did not get that far)`);
  return p;
};
/** The newest backup aligned at or before a state recorded at `lsn` (it holds the commits below its LSN). */
const backupFor = (lsn: string): Backup => [...backups].reverse().find((b) => parseLsn(b.alignedLsn) <= parseLsn(lsn)) as Backup;
/** For a time target, a later backup holds the same state when no transaction committed between the point and its LSN. */
const backupForTime = (lsn: string): Backup =>
  [...backups]
    .reverse()
    .find((b) => parseLsn(b.alignedLsn) <= parseLsn(lsn) || !index.some((t) => t.commitLsn >= parseLsn(lsn) && t.commitLsn < parseLsn(b.alignedLsn))) as Backup;
const accident = (): TxnSummary => {
  const t = index.find((x) => String(x.xid) === accidentXid);
  if (!t) throw new Error(`the accident's transaction (xid ${accidentXid}) is not in the archive`);
  return t;
};
const markStep = (): number => STEPS.findIndex((s) => s.name === 'pitr mark before-accident') + 1;
const accidentStep = (): number => markStep() + 1;

/** Restores, then compares every table with the recorded point; also checks the JSON report. */
async function restoreAndCompare(
  db: string,
  to: string,
  expected: Point,
  options: { extra?: string[]; env?: NodeJS.ProcessEnv; kind: string; included: (t: TxnSummary) => boolean; tables?: string[] },
): Promise<RestoreRun> {
  const run = await restoreOk(fx, db, to, options.extra ?? [], options.env ?? {});
  const actual = await databaseFingerprints(fx, db);
  const wanted: Fingerprints = options.tables ? Object.fromEntries(options.tables.map((t) => [t, expected.tables[t] ?? null])) : expected.tables;
  if (JSON.stringify(sortKeys(actual)) !== JSON.stringify(sortKeys(wanted))) {
    const wantedRows = options.tables ? Object.fromEntries(options.tables.map((t) => [t, expected.rows[t] ?? []])) : expected.rows;
    throw new Error(
      `${shellLine(run.args)}\nrestored database "${db}" differs from the source after step ${expected.step} (${expected.name}; ${expected.time}, ${expected.lsn}):\n` +
        describeDifference(wanted, actual, wantedRows, await databaseRows(fx.cluster.url(db))) +
        `\nreport: ${JSON.stringify(run.report)}`,
    );
  }
  const problems = await reportProblems(fx, index, run.report, {
    db,
    kind: options.kind,
    input: to,
    backup: options.kind === 'time' ? backupForTime(expected.lsn) : backupFor(expected.lsn),
    included: options.included,
    wholeDatabase: !options.tables,
  });
  if (problems.length > 0)
    throw new Error(`${shellLine(run.args)}\n--json report is wrong:\n  ${problems.join('\n  ')}\nreport: ${JSON.stringify(run.report, null, 2)}`);
  return run;
}

function sortKeys(fp: Fingerprints): [string, unknown][] {
  return Object.entries(fp).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

const microsOf = async (time: string): Promise<bigint> => {
  const [row] = await fx.cluster.query<{ us: string }>(`SELECT (extract(epoch FROM $1::timestamptz) * 1000000)::bigint::text AS us`, [time]);
  return BigInt((row as { us: string }).us);
};
const upToTime = async (time: string, exclusive = false): Promise<(t: TxnSummary) => boolean> => {
  const us = await microsOf(time);
  return (t) => (exclusive ? t.commitTime < us : t.commitTime <= us);
};

/** Timestamps in the forms users type: the same instant each time. */
async function spelled(time: string, form: 'utc' | 'iso-z' | 'offset' | 'local'): Promise<string> {
  if (form === 'utc') return time;
  const sql = {
    'iso-z': `SELECT to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS t`,
    offset: `SELECT to_char($1::timestamptz AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI:SS.US') || '+05:30' AS t`,
    local: `SELECT to_char($1::timestamptz AT TIME ZONE 'America/New_York', 'YYYY-MM-DD HH24:MI:SS.US') AS t`,
  }[form];
  const [row] = await fx.cluster.query<{ t: string }>(sql, [time]);
  return (row as { t: string }).t;
}

// Restores by time, to points before and after the second backup, the time spelled in several ways.
const TIME_POINTS: [number, 'utc' | 'iso-z' | 'offset' | 'local'][] = [
  [0, 'utc'], // right after the first backup: nothing (but heartbeats) to replay
  [2, 'iso-z'], // TOASTed column left unchanged by an update
  [5, 'offset'], // one of two identical no-key rows deleted
  [6, 'local'], // a row moved between partitions; no zone: the machine's zone (TZ)
  [10, 'utc'], // TRUNCATE of the no-key table
  [13, 'utc'], // ALTER TABLE ADD COLUMN with a default, replayed from the first backup
  [15, 'iso-z'], // CREATE TABLE + inserts in one transaction; the last point before the second backup
  [16, 'utc'], // first point after the second backup: TRUNCATE ... RESTART IDENTITY
  [17, 'utc'], // ON DELETE CASCADE
  [19, 'utc'], // zoo rows copied, 1.4 MB values
  [25, 'utc'], // ALTER TABLE items ADD COLUMN
  [26, 'iso-z'], // the end: DDL and DML in one multi-statement string
];

describe('restore by time', () => {
  test.each(TIME_POINTS)('to the time after step %i (spelled %s) gives that state', async (step, form) => {
    const p = point(step);
    const to = await spelled(p.time, form);
    const env = form === 'local' ? { TZ: 'America/New_York' } : {};
    await restoreAndCompare(`r_time_${step}`, to, p, { env, kind: 'time', included: await upToTime(p.time) });
  });

  test('the exact commit time of the accident: --exclusive stops just before it, inclusive takes it', async () => {
    const at = formatUnixMicros(accident().commitTime);
    await restoreAndCompare('r_commit_excl', at, point(accidentStep() - 1), {
      extra: ['--exclusive'],
      kind: 'time',
      included: await upToTime(at, true),
    });
    await restoreAndCompare('r_commit_incl', at, point(accidentStep()), { kind: 'time', included: await upToTime(at) });
  });
});

describe('restore by xid, mark, lsn, latest', () => {
  test('xid:N --exclusive (N = txid_current() inside the accidental DELETE) is the state just before it', async () => {
    expect(accidentXid).toMatch(/^\d+$/);
    const excl = await restoreAndCompare('r_xid_excl', `xid:${accidentXid}`, point(accidentStep() - 1), {
      extra: ['--exclusive'],
      kind: 'xid',
      included: (t) => t.commitLsn < accident().commitLsn,
    });
    expect(String(excl.report.lastApplied?.xid)).not.toBe(accidentXid);
  });

  test('xid:N (inclusive) takes the accidental DELETE too', async () => {
    const run = await restoreAndCompare('r_xid_incl', `xid:${accidentXid}`, point(accidentStep()), {
      kind: 'xid',
      included: (t) => t.commitLsn <= accident().commitLsn,
    });
    expect(String(run.report.lastApplied?.xid)).toBe(accidentXid);
    expect(run.report.lastApplied?.commitLsn).toBe(formatLsn(accident().commitLsn));
  });

  test('mark:before-accident is the state before the accident', async () => {
    const markTxn = index.find((t) => t.prefixes.includes('pitr.mark'));
    expect(markTxn).toBeDefined();
    await restoreAndCompare('r_mark', 'mark:before-accident', point(markStep()), {
      kind: 'mark',
      included: (t) => t.commitLsn <= (markTxn as TxnSummary).commitLsn,
    });
  });

  test('lsn:X/Y of a recorded point (after a rolled-back savepoint) gives that state', async () => {
    const p = point(9);
    await restoreAndCompare('r_lsn_9', `lsn:${p.lsn}`, p, { kind: 'lsn', included: (t) => t.commitLsn <= parseLsn(p.lsn) });
  });

  test('lsn:X/Y of the last point before the second backup (DDL replayed from the first backup)', async () => {
    const p = point(SECOND_BACKUP_AFTER);
    await restoreAndCompare(`r_lsn_${SECOND_BACKUP_AFTER}`, `lsn:${p.lsn}`, p, { kind: 'lsn', included: (t) => t.commitLsn <= parseLsn(p.lsn) });
  });

  test('lsn:X/Y at the commit LSN of the accident: --exclusive leaves it out', async () => {
    const at = formatLsn(accident().commitLsn);
    await restoreAndCompare('r_lsn_excl', `lsn:${at}`, point(accidentStep() - 1), {
      extra: ['--exclusive'],
      kind: 'lsn',
      included: (t) => t.commitLsn < accident().commitLsn,
    });
  });

  test('latest is the end of the archive, sequences included', async () => {
    const last = point(STEPS.length);
    await restoreAndCompare('r_latest', 'latest', last, { kind: 'latest', included: () => true });
    expect({ sequences: await sequenceValues(fx.cluster.url('r_latest')) }).toEqual({ sequences: sequencesAtEnd });
  });
});

describe('restore of some tables', () => {
  test('--tables type_zoo restores that table only (after DDL on others and a CREATE TABLE)', async () => {
    const p = point(19);
    await restoreAndCompare('r_tables', p.time, p, {
      extra: ['--tables', 'type_zoo'],
      kind: 'time',
      included: await upToTime(p.time),
      tables: ['public.type_zoo'],
    });
    expect(await userTablesOf(fx, 'r_tables')).toEqual(['public.type_zoo']);
  });

  test('--tables with schema-qualified names and a partitioned table', async () => {
    const p = point(18);
    const tables = ['public.measurements', 'public.measurements_2025', 'public.measurements_2026', 'public.measurements_other', 'public.dup_log'];
    await restoreAndCompare('r_tables_parts', p.time, p, {
      extra: ['--tables', 'public.measurements,public.measurements_2025,public.measurements_2026,public.measurements_other,public.dup_log'],
      kind: 'time',
      included: await upToTime(p.time),
      tables,
    });
    expect(await userTablesOf(fx, 'r_tables_parts')).toEqual([...tables].sort());
  });

  const foreignKeys = async (db: string): Promise<string[]> =>
    (
      await fx.cluster.query<{ name: string }>(
        "SELECT conrelid::regclass || ' -> ' || confrelid::regclass AS name FROM pg_constraint WHERE contype = 'f' ORDER BY 1",
        [],
        db,
      )
    ).map((r) => r.name);

  test('--tables orders: its foreign key to customers (not restored) is left out with a warning, the rows are exact', async () => {
    const p = point(18);
    const run = await restoreAndCompare('r_tables_fk', p.time, p, {
      extra: ['--tables', 'orders'],
      kind: 'time',
      included: await upToTime(p.time),
      tables: ['public.orders'],
    });
    expect(await userTablesOf(fx, 'r_tables_fk')).toEqual(['public.orders']);
    expect(await foreignKeys('r_tables_fk')).toEqual([]);
    expect(run.result.stderr).toMatch(/foreign key orders_customer_id_fkey of public\.orders left out: it refers to a table that is not restored/);
  });

  test('--tables customers,orders keeps the foreign key between them', async () => {
    const p = point(18);
    await restoreAndCompare('r_tables_fk2', p.time, p, {
      extra: ['--tables', 'customers,orders'],
      kind: 'time',
      included: await upToTime(p.time),
      tables: ['public.customers', 'public.orders'],
    });
    expect(await foreignKeys('r_tables_fk2')).toEqual(['orders -> customers']);
  });
});
