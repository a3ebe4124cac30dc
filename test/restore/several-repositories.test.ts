import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { decodeCheckedJson, encodeCheckedJson } from '../../src/archive/checked-json';
import type { RepositoryIdentity } from '../../src/archive/repository';
import type { SegmentManifest } from '../../src/archive/segment-manifest';
import { ArchiveFixture } from '../harness/archive-fixture';
import { fingerprintDatabase, type Fingerprints } from '../harness/fingerprint';
import { runPitr, type RunResult } from '../harness/pitr-process';
import { listFiles, RepoCopies, objectFile } from '../harness/repo-files';
import { errorLines, shellLine } from './restore-helpers';

/**
 * restore, log, undo, drill and list given several repositories (copies of one archive): each object is
 * read from the first repository holding an intact copy, falling back object by object, and the output
 * says which repositories were read from.
 */
jest.setTimeout(180_000);

let fx: ArchiveFixture;
const copies = new RepoCopies('pitr-several-');
let expected: Fingerprints;
let deleteXid: number;
/** Segment names (without extension) holding changes after the backup, in LSN order. */
let segments: string[];
/** Backup objects holding table rows. */
let chunks: string[];
let backupManifest: string;

interface Used {
  name: string;
  location: string;
  objectsRead: number;
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(`
    CREATE TABLE items (id int PRIMARY KEY, v text); ALTER TABLE items REPLICA IDENTITY FULL;
    CREATE TABLE orders (id int PRIMARY KEY, item int, qty int);
    INSERT INTO items SELECT g, repeat('v', g % 50) FROM generate_series(1, 2000) g;
    INSERT INTO orders SELECT g, g % 2000 + 1, g % 7 FROM generate_series(1, 3000) g;`);
  expect((await fx.init()).code).toBe(0);
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  expect((await fx.backup()).code).toBe(0);
  // several segments after the backup, one per statement
  for (let i = 1; i <= 8; i++) {
    const seen = archiver.lines.length;
    await fx.cluster.psql(`UPDATE items SET v = 'round ${i}' WHERE id % 8 = ${i - 1}; INSERT INTO orders VALUES (${10_000 + i}, ${i}, ${i});`);
    await archiver.waitFor((l) => l.event === 'segment_stored', 30_000, seen);
  }
  const [{ xid }] = (await fx.cluster.withClient(async (c) => {
    await c.query('BEGIN');
    await c.query('DELETE FROM items WHERE id <= 25');
    const rows = (await c.query<{ xid: string }>('SELECT txid_current()::text AS xid')).rows;
    await c.query('COMMIT');
    return rows;
  })) as [{ xid: string }];
  deleteXid = Number(xid);
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
  expected = await fingerprintDatabase(fx.source);

  const files = listFiles(fx.repoDir);
  backupManifest = files.find((f) => f.startsWith('backups/') && f.endsWith('/manifest.json')) as string;
  chunks = files.filter((f) => f.startsWith('backups/') && f.includes('/data/'));
  const aligned = decodeCheckedJson<{ alignedLsn: string }>(readFileSync(path.join(fx.repoDir, backupManifest)), backupManifest).alignedLsn;
  segments = files
    .filter((f) => f.startsWith('segments/') && f.endsWith('.json'))
    .sort()
    .map((f) => decodeCheckedJson<SegmentManifest>(readFileSync(objectFile(fx.repoDir, f)), f))
    .filter((m) => m.tables.length > 0 && lsnValue(m.firstCommitLsn) >= lsnValue(aligned))
    .map((m) => m.name);
  expect(segments.length).toBeGreaterThanOrEqual(7);
  expect(chunks.length).toBeGreaterThanOrEqual(2);
}, 120_000);

afterAll(async () => {
  copies.removeAll();
  await fx.destroy();
});

const lsnValue = (lsn: string): bigint => {
  const [hi, lo] = lsn.split('/') as [string, string];
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
};

function flipByte(repo: string, object: string): void {
  const file = objectFile(repo, object);
  const bytes = readFileSync(file);
  const at = Math.floor(bytes.length / 2);
  bytes[at] = (bytes[at] as number) ^ 0x01;
  writeFileSync(file, bytes);
}

const remove = (repo: string, object: string): void => rmSync(objectFile(repo, object));

async function pitr(args: string[], expectedCode = 0): Promise<RunResult> {
  const result = await runPitr([...args, '--log-level', 'warn'], {}, 120_000);
  if (result.code !== expectedCode)
    throw new Error(
      `${shellLine(args)}\nexited ${result.code}, expected ${expectedCode}; stderr:\n${result.stderr.slice(-4000)}\nstdout:\n${result.stdout.slice(-2000)}`,
    );
  return result;
}

const repoArgs = (...repos: string[]): string[] => repos.flatMap((r) => ['--repo', r]);

async function restore(db: string, repos: string[]): Promise<{ result: RunResult; repositories: Used[] }> {
  const result = await pitr(['restore', ...repoArgs(...repos), '--target', fx.cluster.url(db), '--to', 'latest', '--json']);
  return { result, repositories: (JSON.parse(result.stdout) as { repositories: Used[] }).repositories };
}

/** Two copies of the archive, damaged differently: neither alone restores, together they hold every object intact. */
function damagedPair(): { first: string; second: string } {
  const first = copies.copy(fx.repoDir);
  const second = copies.copy(fx.repoDir);
  const [s0, s1, s2, s3, s4, s5, s6] = segments as [string, string, string, string, string, string, string];
  // missing in the first: two segment data objects, a manifest, a backup chunk
  remove(first, `${s0}.lz4`);
  remove(first, `${s2}.lz4`);
  remove(first, `${s3}.json`);
  remove(first, chunks[0] as string);
  // damaged in the first: a segment data object (same size), a manifest
  flipByte(first, `${s4}.lz4`);
  flipByte(first, `${s5}.json`);
  // damaged or missing in the second, intact in the first
  flipByte(second, `${s1}.lz4`);
  flipByte(second, `${s6}.json`);
  flipByte(second, chunks[1] as string);
  remove(second, `${s6}.lz4`);
  return { first, second };
}

test('restore exact from either copy alone; --json names the repository read from', async () => {
  const copy = copies.copy(fx.repoDir);
  for (const [db, repo] of [
    ['from_first', fx.repoDir],
    ['from_second', copy],
  ] as const) {
    const { result, repositories } = await restore(db, [repo]);
    expect(await fingerprintDatabase(fx.cluster.url(db))).toEqual(expected);
    expect(repositories).toEqual([{ name: 'repo1', location: repo, objectsRead: expect.any(Number) as number }]);
    expect(repositories[0]?.objectsRead).toBeGreaterThan(segments.length);
    expect(errorLines(result)).toEqual([]); // one repository: nothing more said than before
  }
});

test('restore exact from two damaged copies: each object from the first intact copy, and the output says from which', async () => {
  const { first, second } = damagedPair();
  // neither alone
  const alone = await pitr(['restore', '--repo', first, '--target', fx.cluster.url('first_alone'), '--to', 'latest'], 7);
  expect(alone.stderr).toMatch(/corrupt|not found|missing|gap/);
  const { result, repositories } = await restore('from_both', [`${first}?name=near`, `${second}?name=far`]);
  expect(await fingerprintDatabase(fx.cluster.url('from_both'))).toEqual(expected);
  expect(repositories.map((r) => [r.name, r.location])).toEqual([
    ['near', first],
    ['far', second],
  ]);
  const [near, far] = repositories as [Used, Used];
  expect(near.objectsRead).toBeGreaterThan(far.objectsRead);
  expect(far.objectsRead).toBeGreaterThanOrEqual(6); // 2 + 1 data objects, a manifest twice over, a chunk
  const lines = errorLines(result);
  expect(lines).toContain(`pitr: read from near (${first}): ${near.objectsRead} objects, far (${second}): ${far.objectsRead} objects`);
  expect(lines).toEqual(
    expect.arrayContaining([
      `pitr: warning: near (${first}): ${segments[4]}.lz4 is damaged: its sha256 does not match its manifest; trying the next repository`,
      `pitr: warning: near (${first}): ${segments[5]}.json is damaged: it fails its own checksum; trying the next repository`,
    ]),
  );
  // human output: the same line on stderr, the summary on stdout
  const human = await pitr(['restore', ...repoArgs(first, second), '--target', fx.cluster.url('from_both_human'), '--to', 'latest']);
  expect(human.stdout).toMatch(/^restored "from_both_human" to latest/);
  expect(errorLines(human).filter((l) => l.startsWith('pitr: read from'))).toEqual([
    expect.stringMatching(new RegExp(`^pitr: read from repo1 \\(${first}\\): \\d+ objects, repo2 \\(${second}\\): \\d+ objects$`)) as string,
  ]);
  expect(await fingerprintDatabase(fx.cluster.url('from_both_human'))).toEqual(expected);
});

test('a segment damaged in every copy: the integrity error of one repository, and the restore is not claimed as done', async () => {
  const first = copies.copy(fx.repoDir);
  const second = copies.copy(fx.repoDir);
  const bad = segments[3] as string;
  flipByte(first, `${bad}.lz4`);
  flipByte(second, `${bad}.lz4`);
  remove(first, `${segments[1] as string}.lz4`); // and a fallback before it, which works
  const result = await pitr(['restore', ...repoArgs(first, second), '--target', fx.cluster.url('damaged_everywhere'), '--to', 'latest'], 7);
  const lines = errorLines(result);
  expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^pitr: error: segment ${bad} is corrupt: sha256 [0-9a-f]{64} does not match its manifest`)));
  expect(lines).toContainEqual(expect.stringMatching(/^pitr: read from repo1 .*, repo2 /));
  const [state] = await fx.cluster.query<{ phase: string; lsn: string | null }>(
    'SELECT phase, last_commit_lsn::text AS lsn FROM pitr.restore_state',
    [],
    'damaged_everywhere',
  );
  expect(state?.phase).not.toBe('done');
  const manifest = decodeCheckedJson<SegmentManifest>(readFileSync(objectFile(fx.repoDir, `${bad}.json`)), bad);
  expect(lsnValue(state?.lsn ?? '0/0')).toBeLessThan(lsnValue(manifest.firstCommitLsn));
});

test('log and undo over a mix of damaged copies give what the intact archive gives', async () => {
  const { first, second } = damagedPair();
  const intactLog = JSON.parse((await pitr(['log', '--repo', fx.repoDir, '--rows', '--json'])).stdout) as { entries: unknown[]; repositories: Used[] };
  const mixedLog = await pitr(['log', ...repoArgs(first, second), '--rows', '--json']);
  const mixed = JSON.parse(mixedLog.stdout) as { entries: unknown[]; repositories: Used[] };
  expect(mixed.entries).toEqual(intactLog.entries);
  expect(mixed.repositories.map((r) => r.objectsRead > 0)).toEqual([true, true]);
  expect(errorLines(mixedLog)).toContainEqual(expect.stringMatching(/^pitr: read from repo1 .*: \d+ objects, repo2 .*: \d+ objects$/));

  const intactUndo = JSON.parse((await pitr(['undo', '--repo', fx.repoDir, '--xid', String(deleteXid), '--json'])).stdout) as { sql: string };
  const mixedUndo = JSON.parse((await pitr(['undo', ...repoArgs(first, second), '--xid', String(deleteXid), '--json'])).stdout) as {
    sql: string;
    statements: number;
    repositories: Used[];
  };
  expect(mixedUndo.sql).toEqual(intactUndo.sql);
  expect(mixedUndo.statements).toBeGreaterThan(0);
  expect(mixedUndo.repositories).toHaveLength(2);
});

test('list shows the union and each repository with its name, location, storage class and size', async () => {
  const { first, second } = damagedPair();
  const intact = JSON.parse((await pitr(['list', '--repo', fx.repoDir, '--json'])).stdout) as Record<string, unknown>;
  const listed = JSON.parse((await pitr(['list', ...repoArgs(`${first}?name=near`, `${second}?name=far`), '--json'])).stdout) as Record<string, unknown> & {
    repositories: { name: string; location: string; storageClass: string | null; objects: number; bytes: number; sizeFrom: string }[];
  };
  const { repositories, ...union } = listed;
  const { repositories: single, ...whole } = intact as { repositories: unknown[] };
  expect(union).toEqual(whole);
  const dataObjects = (repo: string): string[] => listFiles(repo).filter((f) => /^segments\/.*\.lz4$|^backups\/[^/]+\/(data|schema)\//.test(f));
  const dataBytes = (repo: string): number => dataObjects(repo).reduce((n, f) => n + statSync(objectFile(repo, f)).size, 0);
  expect(single).toEqual([
    {
      name: 'repo1',
      location: fx.repoDir,
      storageClass: null,
      storageClassFrom: null,
      objects: dataObjects(fx.repoDir).length,
      bytes: dataBytes(fx.repoDir),
      sizeFrom: expect.stringMatching(/^(index|manifests)$/) as string,
      objectsRead: expect.any(Number) as number,
    },
  ]);
  // each damaged copy's own manifests cannot all be read: it is measured by a listing of what it holds
  expect(repositories.map((r) => [r.name, r.location, r.storageClass, r.objects, r.bytes, r.sizeFrom])).toEqual([
    ['near', first, null, dataObjects(first).length, dataBytes(first), 'listing'],
    ['far', second, null, dataObjects(second).length, dataBytes(second), 'listing'],
  ]);
  const human = await pitr(['list', ...repoArgs(`${first}?name=near`, second)]);
  const lines = human.stdout.split('\n');
  expect(lines[0]).toBe('Repositories');
  expect(lines[1]).toMatch(/^ {2}NAME +LOCATION +STORAGE CLASS +OBJECTS +SIZE$/);
  expect(lines[2]).toMatch(new RegExp(`^  near +${first} +default +${dataObjects(first).length} +\\S+`));
  expect(lines[3]).toMatch(new RegExp(`^  repo2 +${second} +default +${dataObjects(second).length} +\\S+`));
  expect(lines[4]).toMatch(/^ {2}near: objects and size from a listing: /);
});

test('drill over a mix of damaged copies passes', async () => {
  const { first, second } = damagedPair();
  const result = await pitr(['drill', ...repoArgs(first, second), '--target', fx.cluster.url('drill_mix'), '--source', fx.source, '--json']);
  const report = JSON.parse(result.stdout) as { ok: boolean; repositories: Used[] };
  expect(report.ok).toBe(true);
  expect(report.repositories.map((r) => r.objectsRead > 0)).toEqual([true, true]);
});

test('a repository of another source among them is refused, naming both', async () => {
  const other = copies.copy(fx.repoDir);
  const identityFile = path.join(other, 'repository.json');
  const identity = decodeCheckedJson<RepositoryIdentity>(readFileSync(identityFile), 'repository.json');
  rmSync(identityFile);
  writeFileSync(identityFile, encodeCheckedJson({ ...identity, systemIdentifier: '7000000000000000001' }));
  const result = await pitr(['restore', ...repoArgs(fx.repoDir, other), '--target', fx.cluster.url('mixed_sources'), '--to', 'latest'], 5);
  expect(errorLines(result)[0]).toBe(
    `pitr: error: repositories repo1 (${fx.repoDir}) and repo2 (${other}) belong to different sources: system identifier ${identity.systemIdentifier}, database "${identity.database}" and system identifier 7000000000000000001, database "${identity.database}"`,
  );
  const log = await pitr(['log', ...repoArgs(other, fx.repoDir)], 5);
  expect(errorLines(log)[0]).toMatch(/^pitr: error: repositories repo1 .* and repo2 .* belong to different sources/);
});

test('a repository whose repository.json cannot be read is left out with a warning; a location holding none is refused', async () => {
  const unreadable = copies.copy(fx.repoDir);
  flipByte(unreadable, 'repository.json');
  const copy = copies.copy(fx.repoDir);
  const result = await pitr(['log', ...repoArgs(unreadable, copy), '--json']);
  expect(JSON.parse(result.stdout)).toMatchObject({
    repositories: [
      { name: 'repo1', location: unreadable, objectsRead: 0 },
      { name: 'repo2', location: copy, objectsRead: expect.any(Number) as number },
    ],
  });
  expect(errorLines(result)).toEqual([
    `pitr: warning: repo1 (${unreadable}): cannot read repository.json: object repository.json is corrupt: checksum mismatch; not using this repository`,
    `pitr: read from repo2 (${copy})`,
  ]);
  const missing = path.join(copy, 'no-such-repository');
  const refused = await pitr(['log', ...repoArgs(copy, missing)], 5);
  expect(errorLines(refused)[0]).toBe(`pitr: error: no repository at ${missing} (it holds no repository.json)`);
});
