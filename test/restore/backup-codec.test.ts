import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import zlib from 'node:zlib';
import { compressFrameSync } from 'lz4-napi';
import { decodeCheckedJson, encodeCheckedJson } from '../../src/archive/checked-json';
import type { BackupManifest } from '../../src/archive/backup-manifest';
import { ArchiveFixture } from '../harness/archive-fixture';
import { fingerprintDatabase } from '../harness/fingerprint';
import { runPitr } from '../harness/pitr-process';
import { listFiles, RepoCopies } from '../harness/repo-files';

/**
 * Table chunks are Brotli since backup manifest format 2: such a backup restores exactly, and a
 * format-1 backup (every chunk LZ4 frames, no codec recorded) still restores exactly.
 */
let fx: ArchiveFixture;
const copies = new RepoCopies('pitr-backup-codec-');
let manifestFile: string;

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(`
    CREATE TABLE items (id int PRIMARY KEY, label text, price numeric(12, 2), at timestamptz, raw bytea, tags text[], doc jsonb, note text);
    INSERT INTO items
      SELECT g, 'item ' || g || E'\\ttab\\\\back\\nline', g * 1.25, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 minute',
             decode(md5(g::text), 'hex'), ARRAY['a' || g, NULL, 'q"uote'], jsonb_build_object('n', g, 'odd', g % 2 = 1),
             CASE WHEN g % 7 = 0 THEN NULL ELSE repeat(chr(65 + g % 26), g % 300) END
        FROM generate_series(1, 20000) g;
    CREATE TABLE small (k text PRIMARY KEY, v int); INSERT INTO small VALUES ('x', 1), ('é', 2), ('', 3);`);
  expect((await fx.init()).code).toBe(0);
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  // several chunks of one table, loaded side by side on restore
  expect((await fx.backup(['--chunk-size', '256kB', '--jobs', '2'])).code).toBe(0);
  await fx.cluster.psql(`UPDATE items SET label = 'after' WHERE id <= 10; DELETE FROM small WHERE k = 'x'`);
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
  manifestFile = listFiles(fx.repoDir).find((f) => f.startsWith('backups/') && f.endsWith('/manifest.json')) as string;
}, 90_000);

afterAll(async () => {
  copies.removeAll();
  await fx.destroy();
});

const readManifest = (repo: string): BackupManifest => decodeCheckedJson<BackupManifest>(readFileSync(path.join(repo, manifestFile)), manifestFile);

async function restoresExactly(repo: string, database: string): Promise<void> {
  const result = await runPitr(['restore', '--repo', repo, '--target', fx.cluster.url(database), '--to', 'latest', '--jobs', '2', '--log-level', 'warn']);
  expect(result.stderr).not.toMatch(/internal error/);
  expect(result.code).toBe(0);
  expect(await fingerprintDatabase(fx.cluster.url(database))).toEqual(await fingerprintDatabase(fx.source));
}

test('a backup stores its table chunks as Brotli streams, recorded in a format-2 manifest, and restores exactly', async () => {
  const manifest = readManifest(fx.repoDir);
  expect(manifest.format).toBe(2);
  const chunks = manifest.tables.flatMap((t) => t.chunks);
  expect(manifest.tables.find((t) => t.name === 'items')?.chunks.length).toBeGreaterThan(2);
  for (const chunk of chunks) {
    expect(chunk).toEqual(expect.objectContaining({ codec: 'brotli', name: expect.stringMatching(/^data\/\d+\.\d{5}\.copy\.br$/) as unknown }));
    // one plain Brotli stream: what `brotli -d` reads
    const stored = readFileSync(path.join(fx.repoDir, path.dirname(manifestFile), chunk.name));
    expect(zlib.brotliDecompressSync(stored).length).toBe(chunk.rawBytes);
  }
  expect(manifest.schema.dump.codec).toBeUndefined();
  await restoresExactly(fx.repoDir, 'from_brotli');
});

test('a format-1 backup (LZ4 chunks, no codec recorded) still restores exactly', async () => {
  const repo = copies.copy(fx.repoDir);
  const dir = path.join(repo, path.dirname(manifestFile));
  const manifest = readManifest(repo);
  // the backup as the previous format wrote it: each chunk LZ4 frames of up to 1 MiB, named .copy.lz4
  for (const table of manifest.tables)
    for (const chunk of table.chunks) {
      const raw = zlib.brotliDecompressSync(readFileSync(path.join(dir, chunk.name)));
      const frames: Buffer[] = [];
      for (let at = 0; at < raw.length; at += 1 << 20) frames.push(compressFrameSync(raw.subarray(at, at + (1 << 20))));
      const stored = Buffer.concat(frames);
      const name = chunk.name.replace(/\.br$/, '.lz4');
      writeFileSync(path.join(dir, name), stored);
      unlinkSync(path.join(dir, chunk.name));
      delete chunk.codec;
      Object.assign(chunk, { name, storedBytes: stored.length, sha256: createHash('sha256').update(stored).digest('hex') });
    }
  manifest.format = 1;
  writeFileSync(path.join(repo, manifestFile), encodeCheckedJson(manifest));
  await restoresExactly(repo, 'from_lz4');
});
