import { readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { decodeCheckedJson, encodeCheckedJson } from '../../src/archive/checked-json';
import type { BackupManifest } from '../../src/archive/backup-manifest';
import { ArchiveFixture } from '../harness/archive-fixture';
import { runPitr, type RunResult } from '../harness/pitr-process';
import { listFiles, RepoCopies, objectFile } from '../harness/repo-files';

/** A damaged base backup ends a restore with the corruption exit code (7) naming the object, never "internal error". */
let fx: ArchiveFixture;
const copies = new RepoCopies('pitr-corrupt-backup-');

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(`CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, repeat('v', g % 50) FROM generate_series(1, 2000) g;`);
  expect((await fx.init()).code).toBe(0);
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  expect((await fx.backup()).code).toBe(0);
  await fx.cluster.psql(`UPDATE items SET v = 'after' WHERE id <= 10`);
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
}, 60_000);

afterAll(async () => {
  copies.removeAll();
  await fx.destroy();
});

function chunkOf(repo: string): { file: string; manifestFile: string } {
  const all = listFiles(repo);
  const file = all.find((f) => f.startsWith('backups/') && f.includes('/data/')) as string;
  const manifestFile = all.find((f) => f.startsWith('backups/') && f.endsWith('/manifest.json')) as string;
  return { file, manifestFile };
}

function restore(repo: string, database: string): Promise<RunResult> {
  return runPitr(['restore', '--repo', repo, '--target', fx.cluster.url(database), '--to', 'latest', '--json']);
}

function expectCorruption(result: RunResult, object: string): void {
  expect(result.stderr).not.toMatch(/internal error/);
  expect(result.code).toBe(7);
  const { error } = JSON.parse(result.stdout) as { error: { kind: string; message: string } };
  expect(error.kind).toBe('Integrity');
  expect(error.message).toContain(object);
}

test('a flipped byte in a backup chunk: the checksum stops the load (exit 7), naming the chunk', async () => {
  const repo = copies.copy(fx.repoDir);
  const { file } = chunkOf(repo);
  const bytes = readFileSync(objectFile(repo, file));
  const at = Math.floor(bytes.length / 2);
  bytes[at] = (bytes[at] as number) ^ 0xff;
  writeFileSync(objectFile(repo, file), bytes);
  expectCorruption(await restore(repo, 'flipped'), file);
});

test('a chunk whose checksum matches but whose compressed stream is damaged: the decoder stops the load (exit 7), naming the chunk', async () => {
  // the manifest is re-sealed over the damaged bytes, so only the decoder can tell
  const repo = copies.copy(fx.repoDir);
  const { file, manifestFile } = chunkOf(repo);
  const bytes = readFileSync(objectFile(repo, file));
  const damaged = Buffer.concat([bytes.subarray(0, 12), Buffer.alloc(64, 0xa5)]);
  writeFileSync(path.join(repo, file), damaged);
  const manifest = decodeCheckedJson<BackupManifest>(readFileSync(path.join(repo, manifestFile)), manifestFile);
  const name = path.basename(file);
  const part = manifest.tables.flatMap((t) => t.chunks).find((c) => c.name.endsWith(name));
  if (!part) throw new Error(`${name} is not in the manifest`);
  part.sha256 = createHash('sha256').update(damaged).digest('hex');
  part.storedBytes = damaged.length;
  writeFileSync(path.join(repo, manifestFile), encodeCheckedJson(manifest));
  expectCorruption(await restore(repo, 'undecodable'), file);
});
