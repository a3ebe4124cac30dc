import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeCheckedJson, encodeCheckedJson } from '../../src/archive/checked-json';
import type { RepositoryIdentity } from '../../src/archive/repository';
import { ArchiveFixture } from '../harness/archive-fixture';
import { fingerprintDatabase, type Fingerprints } from '../harness/fingerprint';
import { runPitr, type RunResult } from '../harness/pitr-process';
import { listFiles, RepoCopies, objectFile } from '../harness/repo-files';

/**
 * Encryption at rest, through the CLI against a real cluster: archive and backup into an encrypted
 * repository, key rotation between two archiver runs, restore exact with both keys, and each way a key
 * can be wrong or missing; verify with and without the key.
 */
jest.setTimeout(240_000);

const CANARY = 'zebra-canary-5521-distinctive';
const keyA = randomBytes(32).toString('hex');
const keyB = randomBytes(32).toString('base64');
let fx: ArchiveFixture;
let keys: string;
const copies = new RepoCopies('pitr-enc-');
let expected: Fingerprints;
let segmentData: string[];

const keyFile = (name: string, text: string): string => {
  const file = path.join(keys, name);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
};
const withKeys = (file: string): NodeJS.ProcessEnv => ({ PITR_ENCRYPTION_KEY_FILE: file });

async function pitr(args: string[], env: NodeJS.ProcessEnv, expectedCode = 0): Promise<RunResult> {
  const result = await runPitr([...args, '--log-level', 'warn'], env, 120_000);
  if (result.code !== expectedCode)
    throw new Error(
      `pitr ${args.join(' ')}\nexited ${result.code}, expected ${expectedCode}; stderr:\n${result.stderr.slice(-3000)}\nstdout:\n${result.stdout.slice(-2000)}`,
    );
  return result;
}

const restoreArgs = (repo: string, db: string): string[] => ['restore', '--repo', repo, '--target', fx.cluster.url(db), '--to', 'latest'];
const errorLine = (result: RunResult): string => result.stderr.split('\n').find((l) => l.startsWith('pitr: error: ')) ?? result.stderr;
const keyIdOf = (repo: string, object: string): string => {
  const bytes = readFileSync(objectFile(repo, object));
  return bytes.toString('ascii', 10, 10 + (bytes[9] as number));
};

beforeAll(async () => {
  keys = mkdtempSync(path.join(tmpdir(), 'pitr-keys-'));
  const onlyA = keyFile('a.keys', `# the first key\nka:${keyA}\n`);
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(`
    CREATE TABLE secrets (id int PRIMARY KEY, v text);
    INSERT INTO secrets SELECT g, '${CANARY}-' || g FROM generate_series(1, 500) g;`);
  // init with the flag; everything else takes the key file from the environment
  await pitr(['init', '--source', fx.source, '--repo', fx.repoDir, '--encryption-key-file', onlyA], {});
  const first = fx.startArchiver([], withKeys(onlyA));
  await first.waitForState('streaming');
  await pitr(['backup', '--source', fx.source, '--repo', fx.repoDir], withKeys(onlyA));
  for (let i = 1; i <= 3; i++) {
    const seen = first.lines.length;
    await fx.cluster.psql(`INSERT INTO secrets SELECT g, '${CANARY}-a${i}-' || g FROM generate_series(${i * 1000}, ${i * 1000 + 50}) g;`);
    await first.waitFor((l) => l.event === 'segment_stored', 30_000, seen);
  }
  await fx.waitCaughtUp();
  expect(await first.stop()).toBe(0);

  // rotation: kb is the new current key, ka stays for reading what it sealed
  const both = keyFile('ab.keys', `kb:${keyB}\nka:${keyA}\n`);
  const second = fx.startArchiver([], withKeys(both));
  await second.waitForState('streaming');
  for (let i = 1; i <= 3; i++) {
    const seen = second.lines.length;
    await fx.cluster.psql(`UPDATE secrets SET v = '${CANARY}-b${i}' WHERE id % 7 = ${i}; DELETE FROM secrets WHERE id = ${i * 1000};`);
    await second.waitFor((l) => l.event === 'segment_stored', 30_000, seen);
  }
  await fx.waitCaughtUp();
  expect(await second.stop()).toBe(0);
  expected = await fingerprintDatabase(fx.source);
  segmentData = listFiles(fx.repoDir)
    .filter((f) => f.startsWith('segments/') && f.endsWith('.lz4'))
    .sort();
}, 200_000);

afterAll(async () => {
  copies.removeAll();
  rmSync(keys, { recursive: true, force: true });
  await fx.destroy();
});

test('on disk: repository.json plaintext and marked encrypted, every other object sealed, no plaintext of the data; both key ids used', () => {
  const identity = decodeCheckedJson<RepositoryIdentity>(readFileSync(path.join(fx.repoDir, 'repository.json')), 'repository.json');
  expect(identity.encryption).toEqual({ scheme: 'PITRAES1/1', firstKeyId: 'ka' });
  const files = listFiles(fx.repoDir).filter((f) => !f.startsWith('.tmp'));
  expect(files.some((f) => f.startsWith('backups/') && f.includes('/data/'))).toBe(true);
  for (const file of files) {
    const bytes = readFileSync(objectFile(fx.repoDir, file));
    expect([file, bytes.includes(Buffer.from(CANARY))]).toEqual([file, false]);
    if (file === 'repository.json' || file.startsWith('lease/')) continue;
    expect([file, bytes.subarray(0, 8).toString('ascii')]).toEqual([file, 'PITRAES1']);
  }
  const ids = new Set(segmentData.map((f) => keyIdOf(fx.repoDir, f)));
  expect([...ids].sort()).toEqual(['ka', 'kb']);
  expect(keyIdOf(fx.repoDir, segmentData[0] as string)).toBe('ka');
  expect(keyIdOf(fx.repoDir, segmentData.at(-1) as string)).toBe('kb');
});

test('restore across the rotation with both keys is exact', async () => {
  const both = keyFile('ba.keys', `ka:${keyA}\nkb:${keyB}\n`); // the order does not matter for reading
  await pitr(restoreArgs(fx.repoDir, 'restored'), withKeys(both));
  expect(await fingerprintDatabase(fx.cluster.url('restored'))).toEqual(expected);
  expect((await fx.cluster.query<{ n: string }>(`SELECT count(*)::text AS n FROM secrets WHERE v LIKE '${CANARY}%'`, [], 'restored'))[0]?.n).toBe(
    (await fx.cluster.query<{ n: string }>(`SELECT count(*)::text AS n FROM secrets WHERE v LIKE '${CANARY}%'`))[0]?.n,
  );
});

test('the key given in PITR_ENCRYPTION_KEY (several, comma-separated) works as a key file does', async () => {
  const result = await pitr(['verify', '--repo', fx.repoDir], { PITR_ENCRYPTION_KEY: `kb:${keyB},ka:${keyA}` });
  expect(result.stdout).toMatch(/^repository .* is intact: \d+ objects/);
  expect(result.stdout).not.toMatch(/without the encryption key/);
});

test('a wrong key, a key id not given, no key: exit 10 naming the key id', async () => {
  const wrong = keyFile('wrong.keys', `kb:${keyB}\nka:${randomBytes(32).toString('hex')}\n`);
  const w = await pitr(restoreArgs(fx.repoDir, 'wrong_key'), withKeys(wrong), 10);
  expect(errorLine(w)).toMatch(/^pitr: error: the encryption key given as "ka" is not the key object \S+ is sealed with$/);
  const onlyA = keyFile('only-a.keys', `ka:${keyA}\n`);
  const m = await pitr(restoreArgs(fx.repoDir, 'missing_key'), withKeys(onlyA), 10);
  expect(errorLine(m)).toMatch(/^pitr: error: object \S+ is sealed with encryption key "kb", which is not among the keys given \(ka\)$/);
  expect(m.stderr).toMatch(/hint: add the line kb:KEY to the key file/);
  const none = await pitr(restoreArgs(fx.repoDir, 'no_key'), {}, 10);
  expect(errorLine(none)).toMatch(new RegExp(`^pitr: error: repository ${fx.repoDir} is encrypted and no encryption key was given`));
  // a writer without the key is refused before it starts
  const backup = await pitr(['backup', '--source', fx.source, '--repo', fx.repoDir], {}, 10);
  expect(errorLine(backup)).toBe(`pitr: error: repository ${fx.repoDir} is encrypted and no encryption key was given (it was created with key "ka")`);
  // nor with a wrong key under the id of the newest segment's key: nothing is sealed with it
  const wrongCurrent = keyFile('wrong-current.keys', `kb:${randomBytes(32).toString('hex')}\nka:${keyA}\n`);
  const before = listFiles(fx.repoDir).length;
  const wb = await pitr(['backup', '--source', fx.source, '--repo', fx.repoDir], withKeys(wrongCurrent), 10);
  expect(errorLine(wb)).toMatch(/^pitr: error: the encryption key given as "kb" is not the key object segments\/\S+\.json is sealed with$/);
  expect(listFiles(fx.repoDir).length).toBe(before);
  for (const r of [w, m, none]) expect(r.stderr).not.toContain(keyA);
});

test('verify without the key checks envelopes and the chain by name: a deleted segment and a flipped byte are found', async () => {
  const intact = await pitr(['verify', '--repo', fx.repoDir], {});
  expect(intact.stdout).toMatch(/is intact: \d+ objects, .* checked without the encryption key/);
  const json = JSON.parse((await pitr(['verify', '--repo', fx.repoDir, '--json'], {})).stdout) as { ok: boolean; withoutKey: boolean };
  expect([json.ok, json.withoutKey]).toEqual([true, true]);

  const damaged = copies.copy(fx.repoDir);
  const deleted = segmentData[1] as string;
  const flipped = segmentData[3] as string;
  rmSync(objectFile(damaged, deleted));
  const file = objectFile(damaged, flipped);
  const bytes = readFileSync(file);
  bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] as number) ^ 0x01;
  writeFileSync(file, bytes);
  const keyless = await pitr(['verify', '--repo', damaged, '--json'], {}, 7);
  const problems = (JSON.parse(keyless.stdout) as { problems: { object: string; status: string; detail: string }[] }).problems;
  expect(problems).toEqual([
    { object: flipped, status: 'corrupt', detail: 'the SHA-256 in its trailer does not match its bytes' },
    { object: deleted, status: 'missing', detail: `object does not exist (its manifest ${deleted.replace(/\.lz4$/, '.json')} is present)` },
  ]);
  const both = withKeys(keyFile('both.keys', `kb:${keyB}\nka:${keyA}\n`));
  const keyed = await pitr(['verify', '--repo', damaged, '--json'], both, 7);
  const keyedProblems = (JSON.parse(keyed.stdout) as { problems: { object: string; status: string; detail: string }[] }).problems;
  expect(keyedProblems).toEqual(
    expect.arrayContaining([
      {
        object: flipped,
        status: 'corrupt',
        detail: expect.stringMatching(new RegExp(`^object ${flipped} is corrupt: chunk \\d+ fails authentication`)) as string,
      },
      expect.objectContaining({ object: deleted, status: 'missing' }),
    ]),
  );
  // restore stops on the damaged segment with an integrity error naming it
  rmSync(objectFile(damaged, deleted.replace(/\.lz4$/, '.json')));
  const onlyFlipped = copies.copy(fx.repoDir);
  writeFileSync(objectFile(onlyFlipped, flipped), bytes);
  const restore = await pitr(restoreArgs(onlyFlipped, 'flipped'), both, 7);
  expect(errorLine(restore)).toMatch(new RegExp(`^pitr: error: .*${flipped.replace(/\.lz4$/, '')}.* is corrupt`));
});

test('a key for an unencrypted repository is refused', async () => {
  const plain = mkdtempSync(path.join(tmpdir(), 'pitr-plain-'));
  try {
    mkdirSync(plain, { recursive: true });
    writeFileSync(
      path.join(plain, 'repository.json'),
      encodeCheckedJson({ format: 2, systemIdentifier: '1', database: 'postgres', createdAt: new Date().toISOString() }),
    );
    const both = withKeys(keyFile('plain.keys', `ka:${keyA}\n`));
    for (const command of [['verify'], ['list']]) {
      const result = await pitr([...command, '--repo', plain], both, 10);
      expect(errorLine(result)).toBe(`pitr: error: repository ${plain} is not encrypted, but an encryption key was given`);
    }
    expect((await pitr(['verify', '--repo', plain], {})).code).toBe(0);
  } finally {
    rmSync(plain, { recursive: true, force: true });
  }
});

test('a malformed key file: exit 10, the key not shown', async () => {
  const bad = keyFile('bad.keys', 'ka:0123456789abcdef\n');
  const result = await pitr(['verify', '--repo', fx.repoDir], withKeys(bad), 10);
  expect(errorLine(result)).toBe(`pitr: error: key file ${bad}, entry 1: the key is not 32 bytes written as 64 hex digits or base64`);
  expect(result.stderr).not.toContain('0123456789abcdef');
});

test('pitr copy between encrypted repositories: the copy is sealed anew (current key), complete by plaintext, and restores exact', async () => {
  const both = withKeys(keyFile('copy.keys', `kb:${keyB}\nka:${keyA}\n`));
  const into = path.join(mkdtempSync(path.join(tmpdir(), 'pitr-enc-copy-')), 'repo');
  try {
    await pitr(['copy', '--from', fx.repoDir, '--into', into], both);
    const again = JSON.parse((await pitr(['copy', '--from', fx.repoDir, '--into', into, '--json'], both)).stdout) as {
      ok: boolean;
      copied: { objects: number };
      differs: unknown[];
    };
    // a second copy finds every object present: compared by plaintext, as the sealed bytes always differ
    expect([again.ok, again.copied.objects, again.differs]).toEqual([true, 0, []]);
    for (const f of listFiles(into).filter((n) => n.startsWith('segments/'))) expect([f, keyIdOf(into, f)]).toEqual([f, 'kb']);
    await pitr(restoreArgs(into, 'from_copy'), both);
    expect(await fingerprintDatabase(fx.cluster.url('from_copy'))).toEqual(expected);
  } finally {
    rmSync(path.dirname(into), { recursive: true, force: true });
  }
});

/** The peak resident memory (VmHWM) of a running process, in MB. */
const peakRssMb = (pid: number): number => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;

test('one transaction far larger than memory would allow is sealed as it streams: the archiver peaks far below its size, and it restores exact', async () => {
  const both = withKeys(keyFile('large.keys', `kb:${keyB}\nka:${keyA}\n`));
  const archiver = fx.startArchiver([], both);
  await archiver.waitForState('streaming');
  // about 250 MB of row data in one transaction
  await fx.cluster.psql(`INSERT INTO secrets SELECT 100000 + g, repeat(md5(g::text), 32) FROM generate_series(1, 220000) g;`);
  await fx.waitCaughtUp(180_000);
  const peak = peakRssMb(archiver.child.pid as number);
  expect(await archiver.stop()).toBe(0);
  const stored = archiver.lines.filter((l) => l.event === 'segment_stored').reduce((n, l) => n + Number(l.rawBytes), 0);
  expect(stored).toBeGreaterThan(200 * 1024 * 1024);
  // holding the transaction would take more than its size; streaming it takes the process's own ~100 MB and a few chunks
  expect(peak).toBeLessThan((0.7 * stored) / 1024 / 1024);
  await pitr(restoreArgs(fx.repoDir, 'large_sealed'), both);
  expect(await fingerprintDatabase(fx.cluster.url('large_sealed'))).toEqual(await fingerprintDatabase(fx.source));
});
