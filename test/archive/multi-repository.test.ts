import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encodeCheckedJson } from '../../src/archive/checked-json';
import { Repository } from '../../src/archive/repository';
import { GcsStorage } from '../../src/storage/gcs/gcs-storage';
import { LocalStorage } from '../../src/storage/local/local-storage';
import { FakeGcsServer, on } from '../fake-gcs/fake-gcs-server';
import { ArchiveFixture } from '../harness/archive-fixture';
import { fingerprintDatabase } from '../harness/fingerprint';
import { httpGet } from '../harness/http-get';
import { metricSample } from '../harness/metric-sample';
import { PitrProcess, runPitr, type RunResult } from '../harness/pitr-process';
import { pollUntil } from '../harness/poll-until';
import { listFiles, RepoCopies } from '../harness/repo-files';
import { shellLine } from '../restore/restore-helpers';

/**
 * `pitr archive` (and backup, status, prune) with several --repo: every synchronous repository holds
 * each segment before the slot moves past it, an asynchronous one follows and catches up, each one
 * restores exactly on its own, and each is pruned by its own retention.
 */
jest.setTimeout(300_000);

let fx: ArchiveFixture;
let near: string;
let far: string;
let dr: string;
let gcs: FakeGcsServer;
const copies = new RepoCopies('pitr-multi-stale-');
const scratch: string[] = [];
let round = 0;

const repoArgs = (repos: string[]): string[] => repos.flatMap((r) => ['--repo', r]);

async function pitr(args: string[], expectedCode = 0): Promise<RunResult> {
  const all = [...args, '--gcs-endpoint', gcs.url, '--log-level', 'warn'];
  const result = await runPitr(all, {}, 180_000);
  if (result.code !== expectedCode)
    throw new Error(
      `${shellLine(all)}\nexited ${result.code}, expected ${expectedCode}; stderr:\n${result.stderr.slice(-4000)}\nstdout:\n${result.stdout.slice(-2000)}`,
    );
  return result;
}

function startArchiver(repos: string[], extra: string[] = []): PitrProcess {
  return track(
    new PitrProcess([
      'archive',
      '--source',
      fx.source,
      ...repoArgs(repos),
      '--segment-age',
      '200ms',
      '--heartbeat',
      '1s',
      '--lease-ttl',
      '2m',
      '--gcs-endpoint',
      gcs.url,
      '--log-level',
      'debug',
      ...extra,
    ]),
  );
}

const started: PitrProcess[] = [];
function track(p: PitrProcess): PitrProcess {
  started.push(p);
  return p;
}

afterEach(() => {
  if (process.env.PITR_TEST_DUMP) for (const p of started.splice(0)) writeFileSync(`${process.env.PITR_TEST_DUMP}-${Date.now()}`, p.stderr);
});

/** A local repository made unreachable: its directory moved away and a plain file in its place (root ignores permissions). */
function takeDown(dir: string): void {
  renameSync(dir, `${dir}.down`);
  writeFileSync(dir, 'down for a test\n');
}

function bringUp(dir: string): void {
  rmSync(dir);
  renameSync(`${dir}.down`, dir);
}

async function writeSome(rows = 200): Promise<void> {
  round++;
  await fx.cluster.psql(`
    INSERT INTO items SELECT ${round * 100_000} + g, 'round ${round} ' || g FROM generate_series(1, ${rows}) g;
    UPDATE orders SET qty = qty + 1 WHERE id % 5 = ${round % 5};
    DELETE FROM items WHERE id % 97 = ${round % 97} AND id < 1000;`);
}

async function insertLsn(): Promise<string> {
  const [row] = await fx.cluster.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
  return (row as { lsn: string }).lsn;
}

/** The slot's confirmed position is before `lsn` (the end of a commit not stored everywhere yet). */
async function slotConfirmedBefore(lsn: string): Promise<boolean> {
  const [row] = await fx.cluster.query<{ ok: boolean }>("SELECT confirmed_flush_lsn < $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = 'pitr'", [
    lsn,
  ]);
  return row?.ok === true;
}

/** Restores the newest point from `repo` alone into a new database and compares every row with the source. */
async function expectExactRestore(repo: string, db: string): Promise<void> {
  const expected = await fingerprintDatabase(fx.source);
  await pitr(['restore', '--repo', repo, '--target', fx.cluster.url(db), '--to', 'latest']);
  expect(await fingerprintDatabase(fx.cluster.url(db))).toEqual(expected);
}

const backupManifests = (dir: string): string[] => listFiles(dir).filter((f) => /^backups\/[^/]+\/manifest\.json$/.test(f));

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  gcs = await FakeGcsServer.start();
  near = fx.repoDir;
  far = mkdtempSync(path.join(tmpdir(), 'pitr-multi-far-'));
  dr = mkdtempSync(path.join(tmpdir(), 'pitr-multi-dr-'));
  scratch.push(far, dr);
  await fx.cluster.psql(`
    CREATE TABLE items (id int PRIMARY KEY, v text);
    CREATE TABLE orders (id int PRIMARY KEY, item int, qty int);
    INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 3000) g;
    INSERT INTO orders SELECT g, g % 3000 + 1, g % 7 FROM generate_series(1, 2000) g;`);
  expect((await fx.init()).code).toBe(0);
  expect((await fx.backup()).code).toBe(0); // a first backup, in near only
}, 120_000);

afterAll(async () => {
  copies.removeAll();
  for (const dir of scratch) {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}.down`, { recursive: true, force: true });
  }
  await gcs?.close();
  await fx.destroy();
});

test('two synchronous repositories: backup stores the backup in each, every segment goes to both, each restores exactly alone', async () => {
  const archiver = startArchiver([`${near}?name=near`, `${far}?name=far`]);
  await archiver.waitForState('streaming');
  const backup = await pitr(['backup', '--source', fx.source, ...repoArgs([`${near}?name=near`, `${far}?name=far`]), '--json']);
  const doc = JSON.parse(backup.stdout) as { id: string; repositories: { name: string; location: string }[] };
  expect(doc.repositories).toEqual([
    { name: 'near', location: near },
    { name: 'far', location: far },
  ]);
  expect(backupManifests(near)).toContain(`backups/${doc.id}/manifest.json`);
  expect(backupManifests(far)).toEqual([`backups/${doc.id}/manifest.json`]);
  for (let i = 0; i < 4; i++) await writeSome();
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);

  // one stream, two repositories: the same segments (data identical), each manifest under its own lease
  const segments = (dir: string): string[] =>
    listFiles(dir)
      .filter((f) => f.startsWith('segments/') && f.endsWith('.lz4'))
      .sort();
  expect(segments(far)).toEqual(segments(near));
  expect(segments(near).length).toBeGreaterThan(0); // how many depends on how the writes fell into segment ages
  const stored = archiver.lines.filter((l) => l.event === 'segment_stored');
  expect(new Set(stored.map((l) => l.repository))).toEqual(new Set(['near', 'far']));
  const [nearIdentity, farIdentity] = await Promise.all([near, far].map((d) => new Repository(new LocalStorage(d)).identity()));
  expect(farIdentity?.systemIdentifier).toBe(nearIdentity?.systemIdentifier);

  await expectExactRestore(near, 'exact_near');
  await expectExactRestore(far, 'exact_far');
});

test('a synchronous repository down for a while: the other still receives the stream, the slot does not pass what it lacks, it catches up and restores exactly', async () => {
  const archiver = startArchiver([`${near}?name=near`, `${far}?name=far`]);
  await archiver.waitForState('streaming');
  await writeSome();
  await fx.waitCaughtUp();

  takeDown(far);
  const seen = archiver.lines.length;
  await writeSome();
  await writeSome();
  const after = await insertLsn();
  await archiver.waitFor((l) => l.event === 'upload_retry' && l.repository === 'far', 60_000, seen);
  // near holds everything written during the outage...
  const nearRepo = new Repository(new LocalStorage(near));
  await pollUntil(
    () => nearRepo.latestSegment(),
    (latest) => latest !== null && latest.endLsn !== undefined && compareLsn(latest.endLsn, after) >= 0,
    'near to hold the segments written while far is down',
  );
  // ...but the slot stays before it, while far lacks it
  for (let i = 0; i < 3; i++) {
    expect(await slotConfirmedBefore(after)).toBe(true);
    await new Promise((r) => setTimeout(r, 700));
  }
  expect(archiver.child.exitCode).toBeNull();

  bringUp(far);
  await fx.waitCaughtUp(90_000);
  await writeSome();
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
  await expectExactRestore(far, 'far_after_outage');
  await expectExactRestore(near, 'near_after_outage');
});

test('a synchronous repository unreachable at start: the other takes the stream, the slot waits, it joins once reachable (copied level as of the start) and restores exactly', async () => {
  const late = mkdtempSync(path.join(tmpdir(), 'pitr-multi-late-'));
  scratch.push(late);
  takeDown(late);
  const archiver = startArchiver([`${near}?name=near`, `${late}?name=late`]);
  await archiver.waitFor((l) => l.event === 'repository_down' && l.repository === 'late');
  await archiver.waitForState('streaming');
  await writeSome();
  await writeSome();
  const after = await insertLsn();
  const nearRepo = new Repository(new LocalStorage(near));
  await pollUntil(
    () => nearRepo.latestSegment(),
    (latest) => latest !== null && compareLsn(latest.endLsn, after) >= 0,
    'near to hold the segments written while late cannot be reached',
  );
  expect(await slotConfirmedBefore(after)).toBe(true);
  expect(archiver.child.exitCode).toBeNull();

  const seen = archiver.lines.length;
  bringUp(late);
  await archiver.waitFor((l) => l.event === 'repository_joined' && l.repository === 'late', 90_000, seen);
  await fx.waitCaughtUp(90_000);
  await writeSome();
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
  expect(archiver.lines.filter((l) => l.event === 'fatal')).toEqual([]);
  const segments = (dir: string): string[] =>
    listFiles(dir)
      .filter((f) => f.startsWith('segments/'))
      .sort();
  expect(segments(late)).toEqual(segments(near));
  await expectExactRestore(late, 'late_joined');
});

test('an asynchronous repository down for a while: the slot advances anyway, status and metrics name its lag, it catches up and restores exactly', async () => {
  const drSpec = `${dr}?async&name=dr`;
  const archiver = startArchiver([`${near}?name=near`, drSpec], ['--listen', '127.0.0.1:0']);
  const port = (await archiver.waitFor((l) => l.event === 'listening')).port as number;
  await archiver.waitForState('streaming');
  // a new asynchronous repository first receives the whole archive (backups too)
  await archiver.waitFor((l) => l.event === 'repository_caught_up' && l.repository === 'dr', 60_000);
  expect(backupManifests(dr).length).toBeGreaterThan(0);
  await writeSome();
  await fx.waitCaughtUp();
  const stale = copies.copy(dr);

  takeDown(dr);
  const seen = archiver.lines.length;
  await writeSome();
  await writeSome();
  await fx.waitCaughtUp(); // the slot does not wait for an asynchronous repository
  await archiver.waitFor((l) => l.event === 'repository_down' && l.repository === 'dr', 60_000, seen);

  const status = await pitr(['status', '--source', fx.source, '--repo', `${near}?name=near`, '--repo', drSpec, '--json'], 1);
  const report = JSON.parse(status.stdout) as {
    health: string;
    reasons: { message: string }[];
    repositories: { name: string; reachable: boolean; async: boolean; error?: string }[];
  };
  expect(report.health).toBe('degraded');
  expect(report.reasons.map((r) => r.message)).toContainEqual(expect.stringMatching(/^asynchronous repository dr \(.*\) (unreachable|holds no segments)/));
  expect(report.repositories.map((r) => [r.name, r.async])).toEqual([
    ['near', false],
    ['dr', true],
  ]);
  // the text names what it could not tell, not a bare "-, -"
  const text = await pitr(['status', '--source', fx.source, '--repo', `${near}?name=near`, '--repo', drSpec], 1);
  expect(text.stdout.split('\n')).toContainEqual(
    `repository dr (async): unreachable: ${report.repositories[1]?.error ?? ''}, default class, objects and size unknown, ${dr}`,
  );
  const metrics = async (): Promise<string> => (await httpGet(port, '/metrics')).body;
  expect(metricSample(await metrics(), 'pitr_repository_up', 'repository="dr"')).toBe(0);
  expect(metricSample(await metrics(), 'pitr_repository_up', 'repository="near"')).toBe(1);
  // reachable but stale: its lag, past --max-lag, is the reason
  await new Promise((r) => setTimeout(r, 1_500));
  await writeSome();
  await fx.waitCaughtUp();
  const lagging = await pitr(['status', '--source', fx.source, '--repo', `${near}?name=near`, '--repo', `${stale}?async&name=stale`, '--max-lag', '1s'], 1);
  expect(lagging.stdout).toMatch(
    /reason: warning: asynchronous repository stale \(.*\) lags [\d.]+s \(\d+ bytes\) behind the newest archived segment, more than --max-lag 1\.0s/,
  );
  expect(lagging.stdout).toMatch(/^repository stale \(async\): newest .* lag [\d.]+s/m);

  bringUp(dr);
  const back = archiver.lines.length;
  await archiver.waitFor((l) => l.event === 'repository_caught_up' && l.repository === 'dr', 90_000, back);
  await writeSome();
  await fx.waitCaughtUp();
  await pollUntil(metrics, (m) => metricSample(m, 'pitr_repository_up', 'repository="dr"') === 1, 'dr to be up again in the metrics');
  const lagBytes = await pollUntil(metrics, (m) => metricSample(m, 'pitr_repository_lag_bytes', 'repository="dr"') === 0, 'dr to have no lag in the metrics');
  expect(metricSample(lagBytes, 'pitr_repository_lag_seconds', 'repository="dr"')).toBe(0);
  const healthy = await pitr(['status', '--source', fx.source, '--repo', `${near}?name=near`, '--repo', drSpec, '--json']);
  const entries = (JSON.parse(healthy.stdout) as { repositories: { name: string; reachable: boolean; lagBytes: number }[] }).repositories;
  expect(entries.find((e) => e.name === 'dr')).toMatchObject({ reachable: true });
  expect(await archiver.stop()).toBe(0);
  await expectExactRestore(dr, 'dr_after_outage');
});

test('a local and a gs:// repository: the new bucket is brought level before streaming; while its uploads fail the slot stays put, then it catches up and restores exactly', async () => {
  const bucket = `gs://pitr-multi/shop`;
  const archived = (await new Repository(new LocalStorage(near)).latestSegment()) !== null;
  const archiver = startArchiver([`${near}?name=near`, `${bucket}?name=cloud`]);
  await archiver.waitForState('streaming', 90_000);
  // what near held already was copied into the new bucket first
  if (archived) expect(archiver.lines.some((l) => l.event === 'repository_caught_up' && l.repository === 'cloud')).toBe(true);
  await writeSome();
  await fx.waitCaughtUp();

  gcs.failNext(1_000_000, { status: 503 }, on.uploads);
  const seen = archiver.lines.length;
  await writeSome();
  const after = await insertLsn();
  // the storage client's own retries give up first (about 30 s), then the archiver's
  await archiver.waitFor((l) => l.event === 'upload_retry' && l.repository === 'cloud', 120_000, seen);
  await archiver.waitFor((l) => l.event === 'segment_stored' && l.repository === 'near', 30_000, seen);
  for (let i = 0; i < 3; i++) {
    expect(await slotConfirmedBefore(after)).toBe(true);
    await new Promise((r) => setTimeout(r, 700));
  }
  gcs.clearFaults();
  await fx.waitCaughtUp(90_000);
  expect(await archiver.stop()).toBe(0);
  const cloud = new Repository(new GcsStorage({ bucket: 'pitr-multi', prefix: 'shop', apiEndpoint: gcs.url }));
  const local = new Repository(new LocalStorage(near));
  expect((await cloud.latestSegment())?.name).toBe((await local.latestSegment())?.name);
  await expectExactRestore(bucket, 'exact_cloud');
});

test('per-repository retention: prune removes from the repository with the short window and keeps in the other', async () => {
  const both = [`${near}?name=near&retention=1s`, `${far}?name=far&retention=30d`];
  const first = backupManifests(near).sort();
  expect(first.length).toBeGreaterThanOrEqual(1);
  const older = (dir: string): string[] => backupManifests(dir).filter((m) => first.includes(m));
  const inFar = older(far);
  await writeSome();
  await pitr(['backup', '--source', fx.source, ...repoArgs(both)]);
  await new Promise((r) => setTimeout(r, 1_500));
  const pruned = await pitr(['prune', ...repoArgs(both), '--json']);
  const doc = JSON.parse(pruned.stdout) as { repositories: { name: string; retentionSeconds: number; removed: { backups: string[]; segments: number } }[] };
  const [nearReport, farReport] = doc.repositories as [(typeof doc.repositories)[0], (typeof doc.repositories)[0]];
  expect([nearReport.name, nearReport.retentionSeconds, farReport.name, farReport.retentionSeconds]).toEqual(['near', 1, 'far', 2_592_000]);
  expect([...nearReport.removed.backups].sort()).toEqual(first.map((m) => m.split('/')[1]).sort());
  expect(nearReport.removed.segments).toBeGreaterThan(0);
  expect(farReport.removed).toMatchObject({ backups: [], segments: 0 });
  expect(older(near)).toEqual([]);
  expect(older(far)).toEqual(inFar);
  expect(inFar.length).toBeGreaterThan(0);
  // a repository without a retention of its own and no --retention is named
  const missing = await pitr(['prune', '--repo', `${near}?retention=7d`, '--repo', far], 2);
  expect(missing.stderr).toMatch(/^pitr: error: prune: repository repo2 has no retention: give it \?retention= or give --retention$/m);
  // what is left in near still restores to its newest point
  await expectExactRestore(near, 'near_after_prune');
});

test('a repository of another source among them refuses the start, naming it, and nothing is streamed; reached only later, it stops the archiver', async () => {
  const foreign = mkdtempSync(path.join(tmpdir(), 'pitr-multi-foreign-'));
  scratch.push(foreign);
  const identity = { format: 1, systemIdentifier: '1234567890123456789', database: 'elsewhere', createdAt: new Date().toISOString() };
  writeFileSync(path.join(foreign, 'repository.json'), encodeCheckedJson(identity));
  for (const spec of [`${foreign}?name=other`, `${foreign}?name=other&async`]) {
    const [row] = await fx.cluster.query<{ lsn: string }>("SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'pitr'");
    const archiver = startArchiver([`${near}?name=near`, spec]);
    expect(await archiver.wait()).toBe(5);
    expect(archiver.stderr).toContain(`repository ${foreign} belongs to another database (system identifier 1234567890123456789, database "elsewhere")`);
    expect(archiver.lines.some((l) => l.event === 'state' && l.to === 'streaming')).toBe(false);
    const [after] = await fx.cluster.query<{ lsn: string }>("SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'pitr'");
    expect(after?.lsn).toBe(row?.lsn);
  }
  // one that could not be reached at start and turns out to be another source's stops the archiver once reached
  takeDown(foreign);
  const archiver = startArchiver([`${near}?name=near`, `${foreign}?name=other`]);
  await archiver.waitForState('streaming');
  bringUp(foreign);
  expect(await archiver.wait()).toBe(5);
  expect(archiver.stderr).toContain(`repository ${foreign} belongs to another database (system identifier 1234567890123456789, database "elsewhere")`);
  // near's lease was released on the way out: the next archiver starts at once
  const next = startArchiver([`${near}?name=near`]);
  await next.waitForState('streaming', 30_000);
  expect(next.lines.some((l) => l.event === 'waiting_for_lease')).toBe(false);
  expect(await next.stop()).toBe(0);
});

function compareLsn(a: string, b: string): number {
  const value = (lsn: string): bigint => {
    const [hi, lo] = lsn.split('/') as [string, string];
    return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
  };
  const d = value(a) - value(b);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}
