import { statSync } from 'node:fs';
import { FakeGcsServer } from '../fake-gcs/fake-gcs-server';
import { ArchiveFixture } from '../harness/archive-fixture';
import { runPitr, type PitrProcess, type RunResult } from '../harness/pitr-process';
import { listFiles, objectFile } from '../harness/repo-files';

/**
 * Storage classes end to end: `pitr copy` into a gs:// repository with storage-class= writes every object
 * in that class, a class the bucket refuses is a clear error, and `pitr list` over a local repository and
 * that copy shows each with its class and a size that is what each holds.
 */
jest.setTimeout(180_000);

const BUCKET = 'pitr-tiers';
let fx: ArchiveFixture;
let gcs: FakeGcsServer;

const pitr = (args: string[]): Promise<RunResult> => runPitr([...args, '--gcs-endpoint', gcs.url, '--log-level', 'warn']);

/** What list counts: segment data objects and the objects of complete backups (not manifests, index, records). */
const isDataObject = (name: string): boolean => /^segments\/.*\.lz4$|^backups\/[^/]+\/(data|schema)\//.test(name);

interface Listed {
  repositories: {
    name: string;
    location: string;
    storageClass: string | null;
    storageClassFrom: string | null;
    objects: number;
    bytes: number;
    sizeFrom: string;
  }[];
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  gcs = await FakeGcsServer.start({ pageSize: 5 });
  await fx.cluster.psql('CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 300) g;');
  expect((await fx.init()).code).toBe(0);
  const archiver: PitrProcess = fx.startArchiver();
  await archiver.waitForState('streaming');
  expect((await fx.backup()).code).toBe(0);
  for (let i = 0; i < 3; i++) {
    const seen = archiver.lines.length;
    await fx.cluster.psql(`INSERT INTO items SELECT g, 'x' FROM generate_series(${1000 + i * 100}, ${1099 + i * 100}) g`);
    await archiver.waitFor((l) => l.event === 'segment_stored', 30_000, seen);
  }
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
}, 120_000);

afterAll(async () => {
  await gcs.close();
  await fx.destroy();
});

test('copy --into gs://…?storage-class=COLDLINE writes every object in COLDLINE', async () => {
  const result = await pitr(['copy', '--from', fx.repoDir, '--into', `gs://${BUCKET}/cold?storage-class=COLDLINE`, '--json']);
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
  const names = gcs.objectNames(BUCKET, 'cold/');
  expect(names.length).toBeGreaterThan(10);
  expect(new Set(names.map((n) => gcs.getObject(BUCKET, n)?.storageClass))).toEqual(new Set(['COLDLINE']));
});

test('a class the bucket refuses: copy fails with a repository error naming the class and the fix, and stores nothing', async () => {
  gcs.refuseStorageClasses('pitr-refusing', ['ARCHIVE']);
  const result = await pitr(['copy', '--from', fx.repoDir, '--into', 'gs://pitr-refusing/deep?storage-class=ARCHIVE']);
  expect(result.code).toBe(5);
  const errors = result.stderr.split('\n').filter((l) => l.startsWith('pitr: error:') || l.startsWith('pitr: hint:'));
  expect(errors[0]).toMatch(
    /^pitr: error: .*upload of \S+ in gs:\/\/pitr-refusing\/deep failed: the bucket refuses storage class ARCHIVE: The storage class ARCHIVE is not allowed for objects in bucket pitr-refusing\. \(HTTP 400\)$/,
  );
  expect(result.stderr).toMatch(/storage-class=STANDARD\|NEARLINE\|COLDLINE\|ARCHIVE/);
  expect(gcs.objectNames('pitr-refusing')).toEqual([]);
});

test('list over a local repository and its COLDLINE copy: each with its class and the size of what it holds', async () => {
  const local = `${fx.repoDir}?name=disk`;
  const cold = `gs://${BUCKET}/cold?name=cold&storage-class=COLDLINE`;
  const listed = JSON.parse((await pitr(['list', '--repo', local, '--repo', cold, '--json'])).stdout) as Listed;
  const localData = listFiles(fx.repoDir).filter(isDataObject);
  const gcsData = gcs.objectNames(BUCKET, 'cold/').filter((n) => isDataObject(n.slice('cold/'.length)));
  expect(localData.length).toBeGreaterThan(5);
  expect(listed.repositories).toEqual([
    {
      name: 'disk',
      location: fx.repoDir,
      storageClass: null,
      storageClassFrom: null,
      objects: localData.length,
      bytes: localData.reduce((n, f) => n + statSync(objectFile(fx.repoDir, f)).size, 0),
      sizeFrom: expect.stringMatching(/^(index|manifests)$/) as string,
      objectsRead: expect.any(Number) as number,
    },
    {
      name: 'cold',
      location: `gs://${BUCKET}/cold`,
      storageClass: 'COLDLINE',
      storageClassFrom: 'setting',
      objects: gcsData.length,
      bytes: gcsData.reduce((n, name) => n + (gcs.getObject(BUCKET, name)?.data.length ?? 0), 0),
      sizeFrom: expect.stringMatching(/^(index|manifests)$/) as string,
      objectsRead: expect.any(Number) as number,
    },
  ]);
  expect(listed.repositories[1]?.bytes).toBe(listed.repositories[0]?.bytes);

  // without the setting, the class is what the objects report
  const reported = JSON.parse((await pitr(['list', '--repo', `gs://${BUCKET}/cold`, '--json'])).stdout) as Listed;
  expect(reported.repositories.map((r) => [r.storageClass, r.storageClassFrom])).toEqual([['COLDLINE', 'objects']]);

  const human = (await pitr(['list', '--repo', local, '--repo', cold])).stdout.split('\n');
  expect(human.slice(0, 5)).toEqual([
    'Repositories',
    expect.stringMatching(/^ {2}NAME +LOCATION +STORAGE CLASS +OBJECTS +SIZE$/),
    expect.stringMatching(new RegExp(`^  disk +${fx.repoDir} +default +${localData.length} +\\d`)),
    expect.stringMatching(new RegExp(`^  cold +gs://${BUCKET}/cold +COLDLINE \\(setting\\) +${gcsData.length} +\\d`)),
    expect.stringMatching(/^ {2}objects and size: segment data and backup objects, as .* and the backup manifests record them$/),
  ]);
});

test("status over a local repository and its COLDLINE copy shows each one's class and size, as list does", async () => {
  const local = `${fx.repoDir}?name=disk`;
  const cold = `gs://${BUCKET}/cold?name=cold&storage-class=COLDLINE`;
  const listed = JSON.parse((await pitr(['list', '--repo', local, '--repo', cold, '--json'])).stdout) as Listed;
  const status = await pitr(['status', '--source', fx.source, '--repo', local, '--repo', cold, '--json']);
  const report = JSON.parse(status.stdout) as { repositories: { name: string; storageClass: string | null; objects: number; bytes: number }[] };
  expect(report.repositories.map(({ name, storageClass, objects, bytes }) => ({ name, storageClass, objects, bytes }))).toEqual(
    listed.repositories.map(({ name, storageClass, objects, bytes }) => ({ name, storageClass, objects, bytes })),
  );
  const human = (await pitr(['status', '--source', fx.source, '--repo', local, '--repo', cold])).stdout;
  expect(human).toMatch(
    new RegExp(`^repository disk: newest .*, default class, ${listed.repositories[0]?.objects} objects, [\\d.]+ [kMG]?B, ${fx.repoDir}$`, 'm'),
  );
  expect(human).toMatch(
    new RegExp(`^repository cold: newest .*, COLDLINE, ${listed.repositories[1]?.objects} objects, [\\d.]+ [kMG]?B, gs://${BUCKET}/cold$`, 'm'),
  );
});
