/**
 * The archive's index and compaction: the archiver keeps the index (list, status and restore read it
 * instead of every manifest, with the same answers as a full scan); a damaged index is not trusted and
 * is rebuilt; `pitr compact` merges old segments losslessly; and a SIGKILL at each step of compaction and
 * of index maintenance leaves an archive that restores exactly and verifies clean once the command ran again.
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { Repository } from '../../src/archive/repository';
import { createLogger } from '../../src/logger';
import { copyRepository } from '../../src/ops/copy';
import type { ListReport } from '../../src/ops/list';
import { LocalStorage } from '../../src/storage/local/local-storage';
import type { VerifyReport } from '../../src/ops/verify';
import { ArchiveFixture } from '../harness/archive-fixture';
import { fingerprintDatabase, type Fingerprints } from '../harness/fingerprint';
import { runPitr } from '../harness/pitr-process';
import { pollUntil } from '../harness/poll-until';

let fx: ArchiveFixture;
let expected: Fingerprints;
let copies: string;
let restores = 0;

/**
 * Transactions each sealed into a segment of its own: after each, until the archiver has stored one more
 * segment (a fixed sleep gave fewer segments on a loaded machine, and then fewer index pages than compaction needs).
 */
async function transactions(client: Client, from: number, count: number, archiving: () => boolean = () => true): Promise<void> {
  for (let i = from; i < from + count; i++) {
    const stored = segmentFiles(fx.repoDir).length;
    await client.query('INSERT INTO items VALUES ($1::integer, md5($1::text)) ON CONFLICT (id) DO UPDATE SET v = items.v || $2::text', [i % 150, String(i)]);
    if (i % 7 === 0) await client.query('UPDATE totals SET n = n + 1 WHERE k = $1', [i % 3]);
    const deadline = Date.now() + 30_000;
    while (segmentFiles(fx.repoDir).length === stored && archiving()) {
      if (Date.now() > deadline) throw new Error(`no segment stored for transaction ${i} within 30 s`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/**
 * Until the slot has confirmed everything committed so far. The test cluster runs with
 * synchronous_commit off, so the write position (pg_current_wal_lsn) can be behind the last commit:
 * wait for the insert position instead.
 */
async function caughtUp(): Promise<void> {
  const [{ lsn }] = (await fx.cluster.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')) as [{ lsn: string }];
  await pollUntil(
    async () =>
      (await fx.cluster.query<{ ok: boolean }>("SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = 'pitr'", [lsn]))[0]
        ?.ok,
    (ok) => ok === true,
    `the slot confirming ${lsn}`,
  );
}

const segmentFiles = (repo: string): string[] =>
  existsSync(path.join(repo, 'segments'))
    ? readdirSync(path.join(repo, 'segments'), { recursive: true, encoding: 'utf8' }).filter((n) => n.endsWith('.json'))
    : [];

function copyRepo(): string {
  const dir = mkdtempSync(path.join(copies, 'repo-'));
  cpSync(fx.repoDir, dir, { recursive: true });
  return dir;
}

async function list(repo: string): Promise<ListReport> {
  const result = await runPitr(['list', '--repo', repo, '--json', '--log-level', 'warn']);
  expect(result.code).toBe(0);
  // which repository it read from, and how many objects, differ between a copy and the original
  const { repositories: _read, ...report } = JSON.parse(result.stdout) as ListReport & { repositories?: unknown };
  return report as ListReport;
}

async function verify(repo: string, extra: string[] = []): Promise<VerifyReport> {
  return JSON.parse((await runPitr(['verify', '--repo', repo, '--json', '--log-level', 'warn', ...extra])).stdout) as VerifyReport;
}

/** What list says, without what compaction legitimately changes (how many segments and their names). */
const listFacts = (r: ListReport): unknown => ({ ...r, segments: { ...r.segments, count: 0 }, marks: r.marks.map((m) => m.name) });

async function restored(repo: string, to: string): Promise<Fingerprints> {
  const db = `restored_${++restores}`;
  const args = ['restore', '--repo', repo, '--target', fx.cluster.url(db), '--to', to, '--json', '--log-level', 'warn'];
  const result = await runPitr(args, {}, 120_000);
  if (result.code !== 0) throw new Error(`pitr ${args.join(' ')} exited ${result.code}:\n${result.stderr.slice(-3000)}`);
  return fingerprintDatabase(fx.cluster.url(db));
}

async function restoreExactly(repo: string): Promise<void> {
  expect(await restored(repo, 'latest')).toEqual(expected);
}

async function logEntries(repo: string): Promise<unknown[]> {
  const result = await runPitr(['log', '--repo', repo, '--json', '--log-level', 'warn']);
  expect(result.code).toBe(0);
  const { entries } = JSON.parse(result.stdout) as { entries: { segment?: string }[] };
  return entries.map(({ segment: _segment, ...rest }) => rest);
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  copies = mkdtempSync(path.join(tmpdir(), 'pitr-index-'));
  await fx.cluster.psql(`CREATE TABLE items (id integer PRIMARY KEY, v text NOT NULL);
    CREATE TABLE totals (k integer PRIMARY KEY, n integer NOT NULL);
    INSERT INTO totals SELECT g, 0 FROM generate_series(0, 2) g;`);
  expect((await fx.init(['--log-level', 'warn'])).code).toBe(0);
  const archiver = fx.startArchiver(['--segment-age', '50ms', '--heartbeat', '60s']);
  const client = new Client({ connectionString: fx.source });
  await client.connect();
  try {
    await archiver.waitForState('streaming');
    await transactions(client, 0, 10);
    const backup = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--log-level', 'warn']);
    expect(backup.code).toBe(0);
    await transactions(client, 10, 40);
    expect((await runPitr(['mark', 'halfway', '--source', fx.source, '--log-level', 'warn'])).code).toBe(0);
    await transactions(client, 50, 40);
    await caughtUp();
  } finally {
    await client.end();
    expect(await archiver.stop()).toBe(0);
  }
  expected = await fingerprintDatabase(fx.source);
}, 180_000);

afterAll(async () => {
  await fx?.destroy();
  if (copies) rmSync(copies, { recursive: true, force: true });
});

test('the archiver keeps an index; list reads it and says what a scan of every manifest says; verify checks it', async () => {
  expect(readdirSync(path.join(fx.repoDir, 'index', 'catalog')).length).toBeGreaterThan(0);
  const indexed = await list(fx.repoDir);
  expect(indexed.segments.count).toBe(segmentFiles(fx.repoDir).length);
  expect(indexed.marks.map((m) => m.name)).toEqual(['halfway']);
  const scanned = copyRepo();
  rmSync(path.join(scanned, 'index'), { recursive: true });
  expect(await list(scanned)).toEqual({ ...indexed });
  expect((await verify(fx.repoDir)).problems).toEqual([]);
});

test('a damaged index is not trusted: list scans the manifests, verify names it, compact --rebuild-index rebuilds it', async () => {
  const repo = copyRepo();
  const catalogs = readdirSync(path.join(repo, 'index', 'catalog')).sort();
  writeFileSync(path.join(repo, 'index', 'catalog', catalogs[catalogs.length - 1] as string), '{"not": "a catalog"}');
  expect(await list(repo)).toEqual(await list(fx.repoDir));
  const damaged = await verify(repo);
  expect(damaged.problems).toEqual([
    expect.objectContaining({ status: 'corrupt', detail: expect.stringContaining('rebuild it with "pitr compact --rebuild-index"') }),
  ]);
  const rebuilt = await runPitr(['compact', '--repo', repo, '--rebuild-index', '--dry-run', '--log-level', 'warn']);
  expect(rebuilt.code).toBe(0);
  expect((await runPitr(['compact', '--repo', repo, '--rebuild-index', '--older-than', '1000d', '--log-level', 'warn'])).code).toBe(0);
  expect((await verify(repo)).problems).toEqual([]);
});

test('compact merges old segments losslessly: the same list, log, marks and restores, and a clean verify', async () => {
  const repo = copyRepo();
  const before = segmentFiles(repo).length;
  const result = await runPitr(['compact', '--repo', repo, '--older-than', '0s', '--json', '--log-level', 'warn']);
  expect(result.code).toBe(0);
  const report = JSON.parse(result.stdout) as { merged: { sources: number; into: number } };
  expect(report.merged.sources).toBeGreaterThan(report.merged.into);
  expect(segmentFiles(repo).length).toBe(before - report.merged.sources + report.merged.into);
  expect(listFacts(await list(repo))).toEqual(listFacts(await list(fx.repoDir)));
  expect(await logEntries(repo)).toEqual(await logEntries(fx.repoDir));
  expect((await verify(repo, ['--deep'])).problems).toEqual([]);
  await restoreExactly(repo);
  // compacting again finds nothing more to merge in the same pages
  const again = JSON.parse((await runPitr(['compact', '--repo', repo, '--older-than', '0s', '--json', '--log-level', 'warn'])).stdout) as typeof report;
  expect(again.merged.sources).toBe(0);
});

test.each(['compact:segment-stored', 'compact:page-stored', 'compact:catalog-stored', 'compact:source-manifest-removed'])(
  'kill -9 during compaction at %s: the archive restores exactly, and the next compact leaves it clean',
  async (step) => {
    const repo = copyRepo();
    const killed = await runPitr(['compact', '--repo', repo, '--older-than', '0s', '--log-level', 'warn'], { PITR_TEST_CRASH_AT: step });
    expect(killed.code).toBeNull(); // killed by its own SIGKILL
    expect(listFacts(await list(repo))).toEqual(listFacts(await list(fx.repoDir)));
    expect(await logEntries(repo)).toEqual(await logEntries(fx.repoDir));
    await restoreExactly(repo);
    expect((await runPitr(['compact', '--repo', repo, '--older-than', '0s', '--log-level', 'warn'])).code).toBe(0);
    expect((await verify(repo)).problems).toEqual([]);
    expect(await restored(repo, 'mark:halfway')).toEqual(await restored(fx.repoDir, 'mark:halfway'));
  },
  120_000,
);

/** A copy of the archive as a repository lagging behind holds it: every segment after the `keep`-th gone, and no index. */
function behindBy(keep: number): string {
  const repo = copyRepo();
  const manifests = segmentFiles(repo).sort();
  for (const name of manifests.slice(keep)) {
    rmSync(path.join(repo, 'segments', name));
    rmSync(path.join(repo, 'segments', name.replace(/\.json$/, '.lz4')));
  }
  rmSync(path.join(repo, 'index'), { recursive: true, force: true });
  return repo;
}

const local = (dir: string): Repository => new Repository(new LocalStorage(dir));
const quiet = createLogger('silent');

test("a catch-up copy lists only what follows the lagging repository's newest segment; where the source compacted across it, the whole archive", async () => {
  const from = copyRepo();
  const total = segmentFiles(from).length;
  const behind = behindBy(40);
  const newest = (await local(behind).latestSegment())?.name as string;
  const caughtUp = await copyRepository(local(from), local(behind), { transfers: 4, log: quiet, segmentsAfter: newest });
  expect([caughtUp.ok, caughtUp.copied.objects >= 2 * (total - 40)]).toEqual([true, true]);
  expect(caughtUp.present.objects).toBeLessThan(40); // the segments it held were not even listed
  expect(segmentFiles(behind).sort()).toEqual(segmentFiles(from).sort());
  await restoreExactly(behind);

  // the source merged old segments, across where the lagging repository ends: its chain goes on elsewhere
  const lagging = behindBy(40);
  expect((await runPitr(['compact', '--repo', from, '--older-than', '0s', '--log-level', 'warn'])).code).toBe(0);
  const merged = await copyRepository(local(from), local(lagging), { transfers: 4, log: quiet, segmentsAfter: newest });
  expect(merged.ok).toBe(true);
  expect((await list(lagging)).gaps).toEqual([]);
  await restoreExactly(lagging);
  expect(await restored(lagging, 'mark:halfway')).toEqual(await restored(fx.repoDir, 'mark:halfway'));
});

test.each(['index:page-stored', 'index:catalog-stored'])(
  'kill -9 of the archiver at %s: the next archiver completes the index; list, verify and restore are exact',
  async (step) => {
    const client = new Client({ connectionString: fx.source });
    await client.connect();
    try {
      const crashing = fx.startArchiver(['--segment-age', '50ms', '--heartbeat', '60s'], { PITR_TEST_CRASH_AT: step });
      await crashing.waitForState('streaming');
      let i = 1000;
      const alive = (): boolean => crashing.child.exitCode === null && crashing.child.signalCode === null;
      while (alive() && i < 1100) await transactions(client, i++, 1, alive);
      expect(await crashing.stop()).toBe(null); // killed by its own SIGKILL
      const archiver = fx.startArchiver(['--segment-age', '50ms', '--heartbeat', '60s']);
      await archiver.waitForState('streaming');
      await transactions(client, 1100, 20);
      await caughtUp();
      expect(await archiver.stop()).toBe(0);
    } finally {
      await client.end();
    }
    expected = await fingerprintDatabase(fx.source);
    const indexed = await list(fx.repoDir);
    expect(indexed.segments.count).toBe(segmentFiles(fx.repoDir).length);
    const scanned = copyRepo();
    rmSync(path.join(scanned, 'index'), { recursive: true });
    expect(await list(scanned)).toEqual(indexed);
    expect((await verify(fx.repoDir)).problems).toEqual([]);
    await pollUntil(
      async () => readdirSync(path.join(fx.repoDir, 'index', 'pages')).length,
      (n) => n > 0,
      'index pages',
    );
    expect(await restored(scanned, 'latest')).toEqual(expected);
    await restoreExactly(fx.repoDir);
  },
  180_000,
);
