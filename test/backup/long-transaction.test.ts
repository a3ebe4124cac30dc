import { Client } from 'pg';
import { WAIT_REPORT_MS } from '../../src/backup/exported-snapshot';
import { readBackupManifest } from '../../src/restore/load-backup';
import { ArchiveFixture } from '../harness/archive-fixture';
import { PitrProcess } from '../harness/pitr-process';
import { pollUntil } from '../harness/poll-until';
import { sleep } from './backup-helpers';

let fx: ArchiveFixture;

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.query('CREATE TABLE held (id integer PRIMARY KEY, note text)');
  expect((await fx.init()).code).toBe(0);
});
afterAll(async () => fx.destroy());

/** A session with an open transaction that holds an xid (it inserted a row and has not committed). */
async function openTransaction(id: number): Promise<{ client: Client; pid: number }> {
  const client = new Client({ connectionString: fx.source });
  await client.connect();
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  await client.query('BEGIN');
  await client.query(`INSERT INTO held VALUES (${id}, 'inserted while the backup waits')`);
  return { client, pid: (rows[0] as { pid: number }).pid };
}

function startBackup(env: NodeJS.ProcessEnv = {}): PitrProcess {
  return new PitrProcess(['backup', '--source', fx.source, '--repo', fx.repoDir, '--json'], env);
}

/** A report naming backend `pid` (in its message: the `pid` key of the line is also pino's own process pid). */
const waiting = (pid: number) => (line: Record<string, unknown>) =>
  line.event === 'waiting_for_transaction' && String(line.msg).startsWith(`waiting for the transaction of backend ${pid} `);

test('the backup reports the open transaction every few seconds, and completes once it commits', async () => {
  const holder = await openTransaction(1);
  try {
    const started = Date.now();
    const backup = startBackup({ PITR_WAIT_REPORT_MS: '500' });
    const first = await backup.waitFor(waiting(holder.pid), 6000);
    expect(Date.now() - started).toBeLessThan(6000);
    expect(first).toMatchObject({
      level: 40,
      event: 'waiting_for_transaction',
      backendPid: holder.pid,
      user: 'postgres',
      state: 'idle in transaction',
      query: "INSERT INTO held VALUES (1, 'inserted while the backup waits')",
      msg: expect.stringMatching(
        new RegExp(`^waiting for the transaction of backend ${holder.pid} \\(open \\d+s\\) to finish before the slot can be created$`),
      ),
    });
    // it keeps waiting (and saying so) while the transaction stays open
    await pollUntil(
      async () => backup.lines.filter(waiting(holder.pid)).length,
      (reports) => reports >= 3,
      'three reports of the open transaction',
    );
    expect(backup.child.exitCode).toBeNull();
    expect(backup.lines.some((l) => l.event === 'backup_started')).toBe(false);

    await holder.client.query("INSERT INTO held VALUES (2, 'second row')");
    await holder.client.query('COMMIT');
    expect(await backup.wait()).toBe(0);
    expect(backup.stderr).not.toMatch(/"level":(50|60)/);
    const reports = backup.lines.filter(waiting(holder.pid)).length;
    await sleep(700);
    expect(backup.lines.filter(waiting(holder.pid)).length).toBe(reports); // the reporter stopped with the wait

    // the transaction committed before the backup's aligned point: its rows are in the backup
    const { id } = JSON.parse(backup.stdout) as { id: string };
    const manifest = await readBackupManifest(fx.repository(), id);
    expect(manifest.tables.find((t) => t.name === 'held')?.rows).toBe(2);
  } finally {
    await holder.client.end();
  }
});

test(`without PITR_WAIT_REPORT_MS the first report comes after ${WAIT_REPORT_MS} ms`, async () => {
  expect(WAIT_REPORT_MS).toBe(5000);
  const holder = await openTransaction(3);
  try {
    const started = Date.now();
    const backup = startBackup();
    await backup.waitFor((l) => l.event === 'waiting_for_transaction', 8000);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(WAIT_REPORT_MS);
    expect(elapsed).toBeLessThan(8000);
    await holder.client.query('COMMIT');
    expect(await backup.wait()).toBe(0);
  } finally {
    await holder.client.end();
  }
});
