import { Client } from 'pg';
import { formatLsn, parseLsn, type Lsn } from '../../src/pg/lsn';
import { MessagePrefix } from '../../src/archive/segment-format';
import type { ArchivedTransaction } from '../../src/archive/transaction-reader';
import { formatUnixMicros } from '../../src/pg/pg-time';
import type { ArchiveFixture } from '../harness/archive-fixture';
import { diffRows, fingerprintDatabase, listUserTables, rowDigests, type Fingerprints } from '../harness/fingerprint';
import { runPitr, type RunResult } from '../harness/pitr-process';

/** What `pitr restore --json` prints (the contract). */
export interface RestoreReport {
  database: string;
  target: { kind: string; input: string; resolved: unknown };
  backup: { id: string; alignedLsn: string };
  lastApplied: { xid: number | null; commitLsn: string; commitTime: string } | null;
  transactions: number;
  changes: number;
  seconds: { total: number; load: number; replay: number };
  resumed: boolean;
}

export interface RestoreRun {
  args: string[];
  result: RunResult;
  report: RestoreReport;
}

export const restoreArgs = (fx: ArchiveFixture, db: string, to: string, extra: string[] = []): string[] => [
  'restore',
  '--repo',
  fx.repoDir,
  '--target',
  fx.cluster.url(db),
  '--to',
  to,
  ...extra,
];

/** The command line as a user would type it, for failure messages. */
export const shellLine = (args: string[]): string => ['pitr', ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');

/** The error lines of a run: log lines (JSON) left out. */
export const errorLines = (result: RunResult): string[] => result.stderr.split('\n').filter((line) => line !== '' && !line.startsWith('{'));

/** Runs a restore that must succeed (with --json), and returns its report; fails with the command and stderr otherwise. */
export async function restoreOk(fx: ArchiveFixture, db: string, to: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<RestoreRun> {
  const args = [...restoreArgs(fx, db, to, extra), '--json', '--log-level', 'warn'];
  const result = await runPitr(args, env, 100_000);
  if (result.code !== 0) {
    throw new Error(`${shellLine(args)}\nexited ${result.code}, expected 0; stderr:\n${result.stderr.slice(-4000)}\nstdout:\n${result.stdout.slice(-2000)}`);
  }
  let report: RestoreReport;
  try {
    report = JSON.parse(result.stdout) as RestoreReport;
  } catch {
    throw new Error(`${shellLine(args)}\n--json printed no single JSON object on stdout:\n${result.stdout.slice(0, 2000)}`);
  }
  return { args, result, report };
}

/** Runs a restore expected to fail (without --json); the caller checks code and lines. */
export async function restoreFails(
  fx: ArchiveFixture,
  db: string,
  to: string,
  extra: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<RunResult & { args: string[] }> {
  const args = [...restoreArgs(fx, db, to, extra), '--log-level', 'warn'];
  return { ...(await runPitr(args, env, 20_000)), args }; // a refusal is quick: 20 s means it hung
}

/** A database's user tables, or null when the database does not exist. */
export async function userTablesOf(fx: ArchiveFixture, db: string): Promise<string[] | null> {
  const [{ exists }] = (await fx.cluster.query<{ exists: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists', [db])) as [
    { exists: boolean },
  ];
  if (!exists) return null;
  return fx.cluster.withClient((c) => listUserTables(c), db);
}

/** Every user table of the database: fingerprints, and the list itself (null entries never appear). */
export async function databaseFingerprints(fx: ArchiveFixture, db: string): Promise<Fingerprints> {
  return fingerprintDatabase(fx.cluster.url(db));
}

/** Row digests of every user table, for diagnostics. */
export async function databaseRows(url: string): Promise<Record<string, string[]>> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const out: Record<string, string[]> = {};
    for (const table of await listUserTables(client)) out[table] = (await rowDigests(client, table)) ?? [];
    return out;
  } finally {
    await client.end();
  }
}

/** A readable account of how `actual` differs from `expected`, table by table and row by row. */
export function describeDifference(
  expected: Fingerprints,
  actual: Fingerprints,
  expectedRows: Record<string, string[]> | undefined,
  actualRows: Record<string, string[]> | undefined,
): string {
  const lines: string[] = [];
  const tables = [...new Set([...Object.keys(expected), ...Object.keys(actual)])].sort();
  for (const table of tables) {
    const e = expected[table] ?? null;
    const a = actual[table] ?? null;
    if (JSON.stringify(e) === JSON.stringify(a)) continue;
    if (!e) {
      lines.push(`  ${table}: should not exist, restored with ${a?.rows} rows`);
      continue;
    }
    if (!a) {
      lines.push(`  ${table}: missing (expected ${e.rows} rows)`);
      continue;
    }
    lines.push(`  ${table}: expected ${e.rows} rows md5 ${e.md5}, restored ${a.rows} rows md5 ${a.md5}`);
    const er = expectedRows?.[table];
    const ar = actualRows?.[table];
    if (er && ar) {
      const { missing, extra } = diffRows(er, ar);
      for (const m of missing.slice(0, 6)) lines.push(`      missing: ${m}`);
      if (missing.length > 6) lines.push(`      ... ${missing.length - 6} more missing`);
      for (const x of extra.slice(0, 6)) lines.push(`      extra:   ${x}`);
      if (extra.length > 6) lines.push(`      ... ${extra.length - 6} more extra`);
    }
  }
  return lines.join('\n');
}

/** One archived transaction, summarised for oracles. */
export interface TxnSummary {
  xid: number;
  commitLsn: Lsn;
  commitTime: bigint;
  segment: string;
  /** row changes (I/U/D), truncated relations, logical messages */
  iud: number;
  truncated: number;
  messages: number;
  ddl: number;
  /** carries user data or DDL (not only heartbeats / marks) */
  data: boolean;
  tables: Set<string>;
  prefixes: string[];
}

export function summarise(txn: ArchivedTransaction): TxnSummary {
  let iud = 0;
  let truncated = 0;
  let messages = 0;
  let ddl = 0;
  const tables = new Set<string>();
  const prefixes: string[] = [];
  const tableOf = (id: number): string => {
    const rel = txn.relations.get(id);
    return rel ? `${rel.namespace}.${rel.name}` : `?${id}`;
  };
  for (const m of txn.messages) {
    if (m.tag === 'I' || m.tag === 'U' || m.tag === 'D') {
      iud++;
      tables.add(tableOf(m.relationId));
    } else if (m.tag === 'T') {
      truncated += m.relationIds.length;
      for (const id of m.relationIds) tables.add(tableOf(id));
    } else if (m.tag === 'M') {
      messages++;
      prefixes.push(m.prefix);
      if (m.prefix === MessagePrefix.Ddl) ddl++;
    }
  }
  return {
    xid: txn.xid,
    commitLsn: txn.commitLsn,
    commitTime: txn.commitTime,
    segment: txn.segment,
    iud,
    truncated,
    messages,
    ddl,
    data: iud + truncated + ddl > 0,
    tables,
    prefixes,
  };
}

export async function archiveIndex(fx: ArchiveFixture): Promise<TxnSummary[]> {
  return (await fx.transactions()).map(summarise);
}

/** Compares two timestamps (any timestamptz text) in PostgreSQL: -1, 0, 1. */
export async function compareTimes(fx: ArchiveFixture, a: string, b: string): Promise<number> {
  const [row] = await fx.cluster.query<{ c: number }>(
    'SELECT CASE WHEN $1::timestamptz < $2::timestamptz THEN -1 WHEN $1::timestamptz = $2::timestamptz THEN 0 ELSE 1 END AS c',
    [a, b],
  );
  return (row as { c: number }).c;
}

export interface ReportExpectation {
  db: string;
  kind: string;
  input: string;
  backup: { id: string; alignedLsn: string };
  /** the archived transactions the target includes (commit order), when known */
  included?: (t: TxnSummary) => boolean;
  /** count checks only apply to whole-database restores */
  wholeDatabase?: boolean;
}

/**
 * Checks every field of a --json report against the contract and the archive itself. Returns a list
 * of problems (empty when all is well), so one failure message can name them all.
 */
export async function reportProblems(fx: ArchiveFixture, index: TxnSummary[], report: RestoreReport, want: ReportExpectation): Promise<string[]> {
  const problems: string[] = [];
  const check = (ok: boolean, what: string): void => {
    if (!ok) problems.push(what);
  };
  check(report.database === want.db || report.database === fx.cluster.url(want.db), `database is ${JSON.stringify(report.database)}, expected "${want.db}"`);
  check(report.target?.kind === want.kind, `target.kind is ${JSON.stringify(report.target?.kind)}, expected "${want.kind}"`);
  check(report.target?.input === want.input, `target.input is ${JSON.stringify(report.target?.input)}, expected ${JSON.stringify(want.input)}`);
  check(report.target?.resolved !== undefined && report.target?.resolved !== null && report.target?.resolved !== '', 'target.resolved is missing');
  check(
    report.backup?.id === want.backup.id,
    `backup.id is ${JSON.stringify(report.backup?.id)}, expected ${want.backup.id} (the newest backup aligned before the target)`,
  );
  check(
    report.backup?.alignedLsn === want.backup.alignedLsn,
    `backup.alignedLsn is ${JSON.stringify(report.backup?.alignedLsn)}, expected ${want.backup.alignedLsn}`,
  );
  for (const field of ['total', 'load', 'replay'] as const) {
    const v = report.seconds?.[field];
    check(typeof v === 'number' && Number.isFinite(v) && v >= 0, `seconds.${field} is ${JSON.stringify(v)}, expected a number >= 0`);
  }
  if (report.seconds)
    check(report.seconds.load + report.seconds.replay <= report.seconds.total + 0.05, `seconds: load + replay > total (${JSON.stringify(report.seconds)})`);
  check(Number.isInteger(report.transactions) && report.transactions >= 0, `transactions is ${JSON.stringify(report.transactions)}`);
  check(Number.isInteger(report.changes) && report.changes >= 0, `changes is ${JSON.stringify(report.changes)}`);

  const aligned = parseLsn(want.backup.alignedLsn);
  if (want.included) {
    const replayed = index.filter((t) => t.commitLsn >= aligned && want.included?.(t));
    const dataTxns = replayed.filter((t) => t.data);
    const lastData = dataTxns[dataTxns.length - 1];
    const la = report.lastApplied;
    if (la === null) {
      check(lastData === undefined, `lastApplied is null, but transaction ${lastData?.xid} at ${lastData ? formatLsn(lastData.commitLsn) : ''} was replayed`);
    } else if (la === undefined || typeof la !== 'object') {
      problems.push(`lastApplied is ${JSON.stringify(la)}, expected an object or null`);
    } else {
      let commitLsn: Lsn | undefined;
      try {
        commitLsn = parseLsn(String(la.commitLsn));
      } catch {
        problems.push(`lastApplied.commitLsn ${JSON.stringify(la.commitLsn)} is not an LSN`);
      }
      if (commitLsn !== undefined) {
        const txn = index.find((t) => t.commitLsn === commitLsn);
        if (!txn) problems.push(`lastApplied.commitLsn ${la.commitLsn} is no archived transaction's commit LSN`);
        else {
          check(la.xid === txn.xid, `lastApplied.xid ${JSON.stringify(la.xid)} is not the xid (${txn.xid}) of the transaction committed at ${la.commitLsn}`);
          let sameTime = false;
          try {
            sameTime = (await compareTimes(fx, String(la.commitTime), formatUnixMicros(txn.commitTime))) === 0;
          } catch {
            // unparseable: reported below
          }
          check(sameTime, `lastApplied.commitTime ${JSON.stringify(la.commitTime)} is not that transaction's commit time ${formatUnixMicros(txn.commitTime)}`);
          check(replayed.includes(txn), `lastApplied (xid ${txn.xid} at ${la.commitLsn}) is not a transaction the target includes after the backup`);
          if (lastData)
            check(
              txn.commitLsn >= lastData.commitLsn,
              `lastApplied is at ${la.commitLsn}, before the last replayed data transaction (xid ${lastData.xid} at ${formatLsn(lastData.commitLsn)})`,
            );
        }
      }
    }
    if (want.wholeDatabase !== false) {
      const lo = dataTxns.length;
      const hi = replayed.length;
      check(
        report.transactions >= lo && report.transactions <= hi,
        `transactions is ${report.transactions}, expected between ${lo} (with data) and ${hi} (all, heartbeats included)`,
      );
      const changesLo = dataTxns.reduce((n, t) => n + t.iud, 0);
      const changesHi = replayed.reduce((n, t) => n + t.iud + t.truncated + t.messages, 0);
      check(
        report.changes >= changesLo && report.changes <= changesHi,
        `changes is ${report.changes}, expected between ${changesLo} (rows) and ${changesHi} (rows + truncates + messages)`,
      );
    }
  }
  return problems;
}
