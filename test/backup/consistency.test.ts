import type { UpdateMessage } from '../../src/archive/pgoutput-decoder';
import { parseLsn } from '../../src/pg/lsn';
import { ArchiveFixture, valueText } from '../harness/archive-fixture';
import { loadBackup } from '../harness/backup-loader';
import { runPitr } from '../harness/pitr-process';
import { TransferLoad } from '../harness/transfer-load';

let fx: ArchiveFixture;
const ACCOUNTS = 200;

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.withClient((c) => TransferLoad.setup(c, ACCOUNTS));
  expect((await fx.init()).code).toBe(0);
});
afterAll(async () => fx.destroy());

test('a backup taken under concurrent transfers is exactly the state at its aligned LSN', async () => {
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  const load = new TransferLoad(fx.source, ACCOUNTS).start(2);
  await new Promise((r) => setTimeout(r, 500));
  const backup = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--json']);
  expect(backup.stderr).not.toMatch(/"level":50/);
  expect(backup.code).toBe(0);
  const { id, alignedLsn } = JSON.parse(backup.stdout) as { id: string; alignedLsn: string };
  await new Promise((r) => setTimeout(r, 500));
  await load.stop();
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
  expect(load.transfers).toBeGreaterThan(50);

  // the backup alone: invariant holds
  await fx.cluster.query('CREATE DATABASE restored');
  await loadBackup(fx.repository(), id, fx.cluster.url('restored'));
  const [sum] = await fx.cluster.query<{ total: string; n: string }>('SELECT sum(balance)::text AS total, count(*)::text AS n FROM accounts', [], 'restored');
  expect(sum).toEqual({ total: String(ACCOUNTS * 1000), n: String(ACCOUNTS) });

  // backup + every archived transaction committed at or after the aligned LSN = the source now
  const aligned = parseLsn(alignedLsn);
  let before = 0;
  let after = 0;
  await fx.cluster.withClient(async (restored) => {
    for (const txn of await fx.transactions()) {
      const updates = txn.messages.filter((m): m is UpdateMessage => m.tag === 'U' && txn.relations.get(m.relationId)?.name === 'accounts');
      if (updates.length === 0) continue;
      if (txn.commitLsn < aligned) {
        before++;
        continue;
      }
      after++;
      for (const u of updates) {
        await restored.query('UPDATE accounts SET balance = $2, updated_at = $3 WHERE id = $1', [
          valueText(u.newTuple[0]),
          valueText(u.newTuple[1]),
          valueText(u.newTuple[2]),
        ]);
      }
    }
  }, 'restored');
  expect(before).toBeGreaterThan(0);
  expect(after).toBeGreaterThan(0);
  const snapshot = (db: string): Promise<unknown[]> => fx.cluster.query('SELECT id, balance, updated_at FROM accounts ORDER BY id', [], db);
  expect(await snapshot('restored')).toEqual(await snapshot('postgres'));
});

test('archive --backup-every takes a backup beside the stream, and not another one after a restart', async () => {
  const load = new TransferLoad(fx.source, ACCOUNTS).start(1);
  // the newest backup (from the test above, or none) is older than 2 s within a check or two
  const archiver = fx.startArchiver(['--backup-every', '2s']);
  const done = await archiver.waitFor((l) => l.event === 'backup_done', 60_000);
  await archiver.waitFor((l) => l.event === 'segment_stored', 30_000, archiver.lines.length);
  await load.stop();
  expect(await archiver.stop()).toBe(0);

  const restarted = fx.startArchiver(['--backup-every', '1h']);
  await restarted.waitForState('streaming');
  await new Promise((r) => setTimeout(r, 1500));
  expect(await restarted.stop()).toBe(0);
  expect(restarted.lines.filter((l) => l.event === 'scheduled_backup')).toHaveLength(0);
  expect(typeof done.id).toBe('string');
});
