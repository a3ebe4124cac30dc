import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { caughtUp } from '../capture/source-helpers';
import { FakeGcsServer } from '../fake-gcs/fake-gcs-server';
import { fingerprintDatabase, type Fingerprints } from '../harness/fingerprint';
import { PgCluster } from '../harness/pg-cluster';
import { PitrProcess, runPitr, type RunResult } from '../harness/pitr-process';

/**
 * An encrypted gs:// repository through the real GCS client and the fake server: archive, backup and
 * restore exact; the bucket holds sealed objects only (no plaintext of the data); verify without the key
 * checks envelopes; a segment rewritten with damaged bytes (and digests to match) is refused on restore.
 */
jest.setTimeout(180_000);

const BUCKET = 'pitr-sealed';
const PREFIX = 'shop';
const REPO = `gs://${BUCKET}/${PREFIX}`;
const CANARY = 'okapi-canary-9034-distinctive';
let cluster: PgCluster;
let gcs: FakeGcsServer;
let keys: string;
let env: NodeJS.ProcessEnv;
let expected: Fingerprints;

async function pitr(args: string[], expectedCode = 0, extraEnv: NodeJS.ProcessEnv = env): Promise<RunResult> {
  const result = await runPitr([...args, '--gcs-endpoint', gcs.url, '--log-level', 'warn'], extraEnv, 120_000);
  if (result.code !== expectedCode)
    throw new Error(
      `pitr ${args.join(' ')}\nexited ${result.code}, expected ${expectedCode}; stderr:\n${result.stderr.slice(-3000)}\nstdout:\n${result.stdout.slice(-2000)}`,
    );
  return result;
}

beforeAll(async () => {
  keys = mkdtempSync(path.join(tmpdir(), 'pitr-gcs-keys-'));
  const keyFile = path.join(keys, 'keys');
  writeFileSync(keyFile, `g1:${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  env = { PITR_ENCRYPTION_KEY_FILE: keyFile };
  cluster = await PgCluster.start();
  gcs = await FakeGcsServer.start({ pageSize: 7 });
  await cluster.psql(`
    CREATE TABLE notes (id int PRIMARY KEY, v text);
    INSERT INTO notes SELECT g, '${CANARY} ' || g FROM generate_series(1, 400) g;`);
  await pitr(['init', '--source', cluster.url(), '--repo', REPO]);
  const archiver = new PitrProcess(
    ['archive', '--source', cluster.url(), '--repo', REPO, '--gcs-endpoint', gcs.url, '--segment-age', '200ms', '--heartbeat', '1h'],
    env,
  );
  await archiver.waitForState('streaming');
  await pitr(['backup', '--source', cluster.url(), '--repo', REPO]);
  for (let i = 1; i <= 4; i++) {
    const seen = archiver.lines.length;
    await cluster.psql(
      `INSERT INTO notes SELECT g, '${CANARY} round ${i}' FROM generate_series(${i * 1000}, ${i * 1000 + 30}) g; DELETE FROM notes WHERE id = ${i};`,
    );
    await archiver.waitFor((l) => l.event === 'segment_stored', 30_000, seen);
  }
  await caughtUp(cluster);
  expect(await archiver.stop()).toBe(0);
  expected = await fingerprintDatabase(cluster.url());
}, 150_000);

afterAll(async () => {
  rmSync(keys, { recursive: true, force: true });
  await cluster.destroy();
  await gcs.close();
});

test('the bucket holds sealed objects only, and restore through the GCS client is exact', async () => {
  const names = gcs.objectNames(BUCKET, `${PREFIX}/`);
  expect(names.filter((n) => n.includes('/segments/') && n.endsWith('.lz4')).length).toBeGreaterThanOrEqual(4);
  for (const name of names) {
    const data = gcs.getObject(BUCKET, name)?.data as Buffer;
    expect([name, data.includes(Buffer.from(CANARY))]).toEqual([name, false]);
    if (name === `${PREFIX}/repository.json` || name.startsWith(`${PREFIX}/lease/`)) continue;
    expect([name, data.subarray(0, 8).toString('ascii')]).toEqual([name, 'PITRAES1']);
  }
  await pitr(['restore', '--repo', REPO, '--target', cluster.url('restored'), '--to', 'latest']);
  expect(await fingerprintDatabase(cluster.url('restored'))).toEqual(expected);
  expect((await pitr(['verify', '--repo', REPO])).stdout).toMatch(/is intact: \d+ objects/);
  expect((await pitr(['verify', '--repo', REPO], 0, {})).stdout).toMatch(/is intact: .* without the encryption key/);
});

test('a segment rewritten with damaged bytes: verify without the key reports it, restore exits 7 naming it', async () => {
  const segment = gcs
    .objectNames(BUCKET, `${PREFIX}/segments/`)
    .filter((n) => n.endsWith('.lz4'))
    .at(-1) as string;
  const original = gcs.getObject(BUCKET, segment)?.data as Buffer;
  const damaged = Buffer.from(original);
  damaged[100] = (damaged[100] as number) ^ 0x01;
  gcs.deleteObject(BUCKET, segment);
  gcs.putObjectRaw(BUCKET, segment, damaged);
  const object = segment.slice(PREFIX.length + 1);
  try {
    const keyless = JSON.parse((await pitr(['verify', '--repo', REPO, '--json'], 7, {})).stdout) as { problems: unknown[] };
    expect(keyless.problems).toEqual([{ object, status: 'corrupt', detail: 'the SHA-256 in its trailer does not match its bytes' }]);
    const restore = await pitr(['restore', '--repo', REPO, '--target', cluster.url('damaged'), '--to', 'latest'], 7);
    expect(restore.stderr).toContain(`object ${object} is corrupt: chunk 0 fails authentication`);
  } finally {
    gcs.deleteObject(BUCKET, segment);
    gcs.putObjectRaw(BUCKET, segment, original);
  }
});
