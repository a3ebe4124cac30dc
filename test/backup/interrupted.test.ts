import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeCheckedJson } from '../../src/archive/checked-json';
import { BACKUP_SLOT_PREFIX } from '../../src/backup/exported-snapshot';
import { ArchiveFixture } from '../harness/archive-fixture';
import { PitrProcess, runPitr } from '../harness/pitr-process';
import { backupObjects, manifestsIn, sleep, waitUntil } from './backup-helpers';

let fx: ArchiveFixture;
let spool: string;
const ROWS = 500_000;

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  spool = mkdtempSync(path.join(tmpdir(), 'pitr-spool-'));
  await fx.cluster.psql(`CREATE TABLE big (id integer PRIMARY KEY, payload text NOT NULL);
    INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, ${ROWS}) g;`);
  expect((await fx.init()).code).toBe(0);
});
afterAll(async () => {
  await fx.destroy();
  rmSync(spool, { recursive: true, force: true });
});

const backupArgs = (): string[] => ['backup', '--source', fx.source, '--repo', fx.repoDir, '--chunk-size', '64kB', '--spool-dir', spool, '--json'];

test('a backup killed mid-copy leaves no manifest, and the next backup removes its pieces', async () => {
  // 1. kill the backup as soon as its first data chunk is stored (one job, ~500 chunks: far from done)
  const dead = new PitrProcess([...backupArgs(), '--jobs', '1']);
  const firstChunk = await waitUntil(
    'the first data chunk in the repository',
    () => {
      if (dead.child.exitCode !== null) throw new Error(`backup exited (${dead.child.exitCode}) before it was killed:\n${dead.stderr}`);
      return backupObjects(fx.repoDir).find((name) => /^backups\/[^/]+\/data\/\d+\.\d{5}\.copy\.br$/.test(name));
    },
    30_000,
    2,
  );
  dead.child.kill('SIGKILL');
  expect(await dead.wait()).toBeNull();
  expect(dead.child.signalCode).toBe('SIGKILL');

  // 2. what it left: a started marker naming its slot, some chunks, no schema done or not, never a manifest
  const deadPrefix = /^backups\/[^/]+\//.exec(firstChunk)?.[0] as string;
  const pieces = backupObjects(fx.repoDir);
  expect(pieces).toContain(`${deadPrefix}started.json`);
  expect(pieces).toContain(firstChunk);
  expect(pieces.every((name) => name.startsWith(deadPrefix))).toBe(true);
  const dataPieces = pieces.filter((name) => name.startsWith(`${deadPrefix}data/`));
  expect(dataPieces.length).toBeGreaterThanOrEqual(1);
  expect(manifestsIn(fx.repoDir)).toEqual([]);
  const marker = decodeCheckedJson<{ id: string; slot: string; pid: number }>(
    readFileSync(path.join(fx.repoDir, deadPrefix, 'started.json')),
    `${deadPrefix}started.json`,
  );
  expect(`backups/${marker.id}/`).toBe(deadPrefix);
  expect(marker.slot.startsWith(BACKUP_SLOT_PREFIX)).toBe(true);
  expect(marker.pid).toBe(dead.child.pid);

  // 3. its temporary slot goes away with its connection
  await waitUntil(
    `slot ${marker.slot} to be dropped`,
    async () => ((await fx.cluster.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [marker.slot])).length === 0 ? true : undefined),
    15_000,
  );

  // 4. the next backup completes and removes the dead one's pieces
  const next = await runPitr(backupArgs());
  expect(next.stderr).not.toMatch(/"level":(50|60)/);
  expect(next.code).toBe(0);
  const removed = next.stderr
    .split('\n')
    .filter((line) => line.includes('"incomplete_backup_removed"'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  expect(removed).toEqual([expect.objectContaining({ level: 30, event: 'incomplete_backup_removed', prefix: deadPrefix })]);
  const { id, chunks } = JSON.parse(next.stdout) as { id: string; chunks: number };
  expect(`backups/${id}/`).not.toBe(deadPrefix);
  expect(chunks).toBeGreaterThan(400);
  expect(dataPieces.length).toBeLessThan(chunks); // it was killed mid-copy

  const remaining = backupObjects(fx.repoDir);
  expect(remaining.filter((name) => !name.startsWith(`backups/${id}/`))).toEqual([]);
  expect(remaining).toContain(`backups/${id}/manifest.json`);
  expect(remaining).not.toContain(`backups/${id}/started.json`);
  expect(remaining.filter((name) => name.startsWith(`backups/${id}/data/`))).toHaveLength(chunks);
  expect(manifestsIn(fx.repoDir)).toEqual([`backups/${id}/manifest.json`]);
  expect(readdirSync(path.join(fx.repoDir, 'backups'))).toEqual([id]);

  // 5. and a third backup has nothing left to clean up
  await sleep(1100); // backup ids have one-second resolution
  const third = await runPitr(backupArgs());
  expect(third.code).toBe(0);
  expect(third.stderr).not.toContain('incomplete_backup_removed');
});
