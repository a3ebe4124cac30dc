import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encodeCheckedJson } from '../../src/archive/checked-json';
import { parseLsn } from '../../src/pg/lsn';
import type { CopyReport } from '../../src/ops/copy';
import { FakeGcsServer, on } from '../fake-gcs/fake-gcs-server';
import { ArchiveFixture } from '../harness/archive-fixture';
import { fingerprintDatabase } from '../harness/fingerprint';
import { PitrProcess, runPitr, type RunResult } from '../harness/pitr-process';
import { pollUntil } from '../harness/poll-until';
import { listFiles, RepoCopies, objectFile } from '../harness/repo-files';

/**
 * `pitr copy` between local and gs:// repositories (the fake GCS server): into an empty repository and
 * back, incrementally, refusing a corrupt source object, refusing another source's repository, and
 * completing after being killed midway; each copy restored and compared row for row with the source.
 */
jest.setTimeout(180_000);

const BUCKET = 'pitr-copy';
let fx: ArchiveFixture;
let gcs: FakeGcsServer;
let archiver: PitrProcess | undefined;
const copies = new RepoCopies('pitr-copy-');
const dirs: string[] = [];

const newDir = (): string => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pitr-copy-target-'));
  dirs.push(dir);
  return dir;
};
const copy = (from: string, into: string, extra: string[] = []): Promise<RunResult> =>
  runPitr(['copy', '--from', from, '--into', into, '--gcs-endpoint', gcs.url, '--log-level', 'warn', ...extra]);
const report = (result: RunResult): CopyReport => JSON.parse(result.stdout) as CopyReport;
/** What copy copies of a local repository: the identity, segments, slot records and complete backups. */
const copiedNames = (dir: string): string[] => listFiles(dir).filter((n) => /^(repository\.json|segments\/|slots\/|backups\/)/.test(n));

let restores = 0;
/** Restores `repo` into a new database and compares every user table with the source. */
async function expectRestoresExact(repo: string): Promise<void> {
  const database = `copied_${++restores}`;
  const restore = await runPitr([
    'restore',
    '--repo',
    repo,
    '--gcs-endpoint',
    gcs.url,
    '--target',
    fx.cluster.url(database),
    '--to',
    'latest',
    '--log-level',
    'warn',
  ]);
  expect({ code: restore.code, stderr: restore.stderr }).toEqual({ code: 0, stderr: '' });
  expect(await fingerprintDatabase(fx.cluster.url(database))).toEqual(await fingerprintDatabase(fx.source));
}

/** Every segment manifest in a local target has its data, and the manifests have no hole before the newest. */
function expectNoManifestWithoutData(dir: string): void {
  const names = new Set(listFiles(dir));
  for (const name of names)
    if (name.startsWith('segments/') && name.endsWith('.json'))
      expect({ name, data: names.has(name.replace(/\.json$/, '.lz4')) }).toEqual({ name, data: true });
  for (const name of names)
    if (name.startsWith('backups/') && name.endsWith('/manifest.json')) {
      const manifest = JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as { tables: { chunks: { name: string }[] }[] };
      const prefix = name.slice(0, -'manifest.json'.length);
      for (const chunk of manifest.tables.flatMap((t) => t.chunks)) expect(names.has(`${prefix}${chunk.name}`)).toBe(true);
    }
}

async function insertAndWaitStored(from: number, to: number): Promise<void> {
  const seen = (archiver as PitrProcess).lines.length;
  await fx.cluster.psql(`INSERT INTO items SELECT g, 'item ' || g FROM generate_series(${from}, ${to}) g`);
  await (archiver as PitrProcess).waitFor((l) => l.event === 'segment_stored', 30_000, seen);
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  gcs = await FakeGcsServer.start({ pageSize: 7 });
  await fx.cluster.psql('CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 200) g;');
  expect((await fx.init()).code).toBe(0);
  archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  await insertAndWaitStored(201, 300);
  expect((await fx.backup()).code).toBe(0);
  for (let i = 0; i < 4; i++) await insertAndWaitStored(301 + i * 50, 350 + i * 50);
  await fx.cluster.psql('UPDATE items SET v = v || 2 WHERE id % 7 = 0; DELETE FROM items WHERE id % 11 = 0');
  await fx.waitCaughtUp();
}, 120_000);
afterAll(async () => {
  if (archiver && archiver.child.exitCode === null) await archiver.stop();
  copies.removeAll();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  await gcs.close();
  await fx.destroy();
});

test('copy into an empty gs:// repository while the archiver runs, then from it into an empty local one: both restore exact', async () => {
  const first = await copy(fx.repoDir, `gs://${BUCKET}/region-b`, ['--json']);
  expect({ code: first.code, stderr: first.stderr }).toEqual({ code: 0, stderr: '' });
  const up = report(first);
  expect(up).toMatchObject({ ok: true, refused: [], differs: [], heldBack: 0 });
  expect(up.copied.objects).toBeGreaterThan(10);
  const inGcs = gcs.objectNames(BUCKET, 'region-b/').map((n) => n.slice('region-b/'.length));
  // not the writer lease; the index only as the target's own, built from what it holds
  expect(inGcs.filter((n) => n.startsWith('lease/'))).toEqual([]);
  expect(inGcs.some((n) => n.startsWith('index/'))).toBe(up.indexBuilt);
  expect(inGcs).toContain('repository.json');
  expect(inGcs.some((n) => n.startsWith('backups/') && n.endsWith('/manifest.json'))).toBe(true);

  const local = newDir();
  const down = await copy(`gs://${BUCKET}/region-b`, local, ['--json']);
  expect({ code: down.code, stderr: down.stderr }).toEqual({ code: 0, stderr: '' });
  expect(report(down).copied.objects).toBe(up.copied.objects);
  expect(copiedNames(local).sort()).toEqual(inGcs.filter((n) => !n.startsWith('index/')).sort());
  await expectRestoresExact(local);
  await expectRestoresExact(`gs://${BUCKET}/region-b`);
});

test('copy again after more archiving copies only the new objects; the human summary says what it did', async () => {
  await insertAndWaitStored(1000, 1100);
  await fx.waitCaughtUp();
  expect(await (archiver as PitrProcess).stop()).toBe(0);
  const before = new Set(gcs.objectNames(BUCKET, 'region-b/').map((n) => n.slice('region-b/'.length)));
  const expected = copiedNames(fx.repoDir).filter((n) => !before.has(n));
  expect(expected.length).toBeGreaterThan(0);
  const again = await copy(fx.repoDir, `gs://${BUCKET}/region-b`, ['--json']);
  expect(again.code).toBe(0);
  expect(report(again).copied.objects).toBe(expected.length);
  expect(report(again).present.objects).toBe(copiedNames(fx.repoDir).length - expected.length);
  const human = await copy(fx.repoDir, `gs://${BUCKET}/region-b`);
  expect(human.code).toBe(0);
  expect(human.stdout).toMatch(/^ {2}copied: {2}0 objects, 0 B/m);
  expect(human.stdout).toMatch(new RegExp(`^ {2}present: ${copiedNames(fx.repoDir).length} objects already in the target`, 'm'));
  await expectRestoresExact(`gs://${BUCKET}/region-b`);
});

test('a corrupt segment in the source is refused: nothing after it in the chain, no manifest without its data', async () => {
  const source = copies.copy(fx.repoDir);
  const data = listFiles(source)
    .filter((n) => n.startsWith('segments/') && n.endsWith('.lz4'))
    .sort();
  const damaged = data[Math.floor(data.length / 2)] as string;
  const file = objectFile(source, damaged);
  const bytes = readFileSync(file);
  bytes[bytes.length - 3] = (bytes[bytes.length - 3] as number) ^ 0xff;
  writeFileSync(file, bytes);
  const target = newDir();
  const result = await copy(source, target, ['--json']);
  expect(result.code).toBe(7);
  const r = report(result);
  expect(r.refused).toEqual([{ object: damaged, detail: expect.stringMatching(/^sha256 [0-9a-f]{64} does not match its manifest/) as unknown }]);
  expect(r.heldBack).toBe(data.length - data.indexOf(damaged) - 1);
  const stored = new Set(listFiles(target));
  expect(stored.has(damaged.replace(/\.lz4$/, '.json'))).toBe(false);
  for (const later of data.slice(data.indexOf(damaged))) expect(stored.has(later.replace(/\.lz4$/, '.json'))).toBe(false);
  for (const earlier of data.slice(0, data.indexOf(damaged))) expect(stored.has(earlier.replace(/\.lz4$/, '.json'))).toBe(true);
  expectNoManifestWithoutData(target);
  // the human summary names it
  const human = await copy(source, newDir());
  expect(human.code).toBe(7);
  expect(human.stdout).toContain(`refused  ${damaged}  sha256 `);
});

test("copy into another source's repository, or into a directory holding something else, is refused", async () => {
  const other = newDir();
  writeFileSync(
    path.join(other, 'repository.json'),
    encodeCheckedJson({ format: 2, systemIdentifier: '1234567890', database: 'elsewhere', createdAt: new Date().toISOString() }),
  );
  const refused = await copy(fx.repoDir, other);
  expect(refused.code).toBe(5);
  expect(refused.stderr).toContain(`repository ${other} belongs to another database (system identifier 1234567890, database "elsewhere")`);
  expect(listFiles(other)).toEqual(['repository.json']);
  const busy = newDir();
  writeFileSync(path.join(busy, 'notes.txt'), 'not a repository');
  const notEmpty = await copy(fx.repoDir, busy);
  expect(notEmpty.code).toBe(5);
  expect(notEmpty.stderr).toContain(`${busy} is not empty (it holds notes.txt) and holds no repository`);
});

test('copy killed midway (SIGKILL while an upload hangs) leaves no manifest without data; run again, it completes and restores exact', async () => {
  let uploads = 0;
  gcs.failNext(100_000, { kind: 'timeout' }, (r) => on.uploads(r) && ++uploads > 12);
  const killed = new PitrProcess(['copy', '--from', fx.repoDir, '--into', `gs://${BUCKET}/killed`, '--gcs-endpoint', gcs.url, '--transfers', '2']);
  await pollUntil(
    async () => uploads,
    (n) => n > 12,
    'the copy to reach the hanging uploads',
  );
  killed.child.kill('SIGKILL');
  expect(await killed.wait()).toBeNull();
  gcs.clearFaults();
  const partial = gcs.objectNames(BUCKET, 'killed/').map((n) => n.slice('killed/'.length));
  expect(partial.length).toBeGreaterThan(0);
  expect(partial.length).toBeLessThan(copiedNames(fx.repoDir).length);
  for (const name of partial) if (name.startsWith('segments/') && name.endsWith('.json')) expect(partial).toContain(name.replace(/\.json$/, '.lz4'));
  const again = await copy(fx.repoDir, `gs://${BUCKET}/killed`, ['--json']);
  expect({ code: again.code, stderr: again.stderr }).toEqual({ code: 0, stderr: '' });
  expect(report(again).copied.objects + report(again).present.objects).toBe(copiedNames(fx.repoDir).length);
  expect(report(again).present.objects).toBe(partial.length);
  await expectRestoresExact(`gs://${BUCKET}/killed`);
});

test('verify over two repositories names where the good copy of a missing and of a corrupt object is; --repair fixes both', async () => {
  const a = copies.copy(fx.repoDir);
  const b = copies.copy(fx.repoDir);
  const data = listFiles(a)
    .filter((n) => n.startsWith('segments/') && n.endsWith('.lz4'))
    .sort();
  // a whole segment gone from a, after the backup (which then cannot be replayed past it): its verify
  // sees a gap in the chain, which b's copy fills
  const backupManifest = listFiles(a).find((n) => /^backups\/[^/]+\/manifest\.json$/.test(n)) as string;
  const aligned = parseLsn((JSON.parse(readFileSync(path.join(a, backupManifest), 'utf8')) as { alignedLsn: string }).alignedLsn);
  const afterBackup = data.slice(0, -1).filter((n) => BigInt(`0x${path.basename(n).slice(0, 16)}`) > aligned);
  const whole = afterBackup[0] as string;
  const missing = data.filter((n) => n !== whole)[Math.floor(data.length / 2)] as string;
  unlinkSync(objectFile(a, missing));
  const wholeManifest = whole.replace(/\.lz4$/, '.json');
  unlinkSync(objectFile(a, whole));
  unlinkSync(objectFile(a, wholeManifest));
  const chunk = listFiles(b).find((n) => /^backups\/[^/]+\/data\/.+\.copy\.br$/.test(n)) as string;
  const file = path.join(b, chunk);
  const bytes = readFileSync(file);
  bytes[5] = (bytes[5] as number) ^ 0xff;
  writeFileSync(file, bytes);

  const verify = (extra: string[]): Promise<RunResult> => runPitr(['verify', '--repo', a, '--repo', b, '--log-level', 'warn', ...extra]);
  const found = await verify(['--json']);
  expect(found.code).toBe(7);
  const doc = JSON.parse(found.stdout) as { ok: boolean; problems: { repository: string; object: string; status: string; goodCopy: string | null }[] };
  expect(doc.ok).toBe(false);
  expect(doc.problems).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ repository: a, object: missing, status: 'missing', goodCopy: b }),
      expect.objectContaining({ repository: a, object: whole, status: 'missing', goodCopy: b }),
      expect.objectContaining({ repository: a, object: wholeManifest, status: 'missing', goodCopy: b }),
      expect.objectContaining({ repository: a, status: 'gap', goodCopy: null }),
      expect.objectContaining({ repository: b, object: chunk, status: 'corrupt', goodCopy: a }),
    ]),
  );
  // and the backup that cannot be replayed past the gap; whether a's index also names the removed segment
  // (one more problem, under index/) depends on whether the archiver had folded it into a page yet
  expect(doc.problems.filter((p) => !(p.object ?? '').startsWith('index/'))).toHaveLength(6);
  const human = await verify([]);
  expect(human.code).toBe(7);
  expect(human.stdout).toMatch(new RegExp(`^missing +${missing} .*; good copy in ${b}$`, 'm'));
  expect(human.stdout).toMatch(new RegExp(`^corrupt +${chunk} .*; good copy in ${a}$`, 'm'));

  const repair = await verify(['--repair', '--json']);
  expect({ code: repair.code, stderr: repair.stderr }).toEqual({ code: 0, stderr: '' });
  const repairDoc = JSON.parse(repair.stdout) as {
    ok: boolean;
    problems: unknown[];
    repairs: { repository: string; object: string; action: string; from: string }[];
  };
  expect(repairDoc).toMatchObject({ ok: true, problems: [] });
  // data before manifests, so no manifest is stored before what it names
  expect(repairDoc.repairs.map((r) => ({ repository: r.repository, object: r.object, action: r.action, from: r.from }))).toEqual([
    { repository: a, object: whole, action: 'stored', from: b },
    { repository: a, object: missing, action: 'stored', from: b },
    { repository: a, object: wholeManifest, action: 'stored', from: b },
    { repository: b, object: chunk, action: 'replaced', from: a },
  ]);
  expect((await runPitr(['verify', '--repo', b])).code).toBe(0);
  await expectRestoresExact(b);
  await expectRestoresExact(a);
});
