import type { InsertMessage } from '../../src/archive/pgoutput-decoder';
import { Repository } from '../../src/archive/repository';
import { readTransactions } from '../../src/archive/transaction-reader';
import { GcsStorage } from '../../src/storage/gcs/gcs-storage';
import { FakeGcsServer, on } from '../fake-gcs/fake-gcs-server';
import { caughtUp, exitWithin } from '../capture/source-helpers';
import { ArchiveFixture, valueText } from '../harness/archive-fixture';
import { PgCluster } from '../harness/pg-cluster';
import { PitrProcess, runPitr } from '../harness/pitr-process';
import { pollUntil } from '../harness/poll-until';
import { TcpProxy } from '../harness/tcp-proxy';

/**
 * SIGTERM stops the archiver within a few seconds in every state: while it waits to reconnect, while the
 * source takes no sessions, while uploads keep failing. It stores what can be stored, acknowledges nothing
 * unstored, and says what it waits for. A stop that hangs until the supervisor kills it is the failure
 * (the bound below is far above the few seconds a stop takes, far below the 35 s and more it took).
 */
const HANG_MS = 20_000;

describe('source down', () => {
  let fx: ArchiveFixture;
  let proxy: TcpProxy | undefined;

  beforeEach(async () => {
    fx = await ArchiveFixture.create();
    await fx.cluster.query('CREATE TABLE items (id int PRIMARY KEY)');
    expect((await fx.init()).code).toBe(0);
  });
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    await fx.destroy();
  });

  test('SIGTERM in backoff: exit 0 within a few seconds, what was stored acknowledged', async () => {
    const archiver = fx.startArchiver();
    await archiver.waitForState('streaming');
    await fx.cluster.query('INSERT INTO items SELECT generate_series(1, 100)');
    await caughtUp(fx.cluster);
    await fx.cluster.stopServer();
    await archiver.waitFor((l) => l.event === 'state' && l.to === 'backoff' && Number(l.attempt) >= 3, 60_000); // backoffs grow
    archiver.child.kill('SIGTERM');
    expect(await exitWithin(archiver, HANG_MS)).toBe(0);
    expect(
      archiver.lines
        .filter((l) => l.event === 'state')
        .map((l) => l.to)
        .slice(-2),
    ).toEqual(['draining', 'stopped']);
  });

  test('SIGTERM while connecting to a source that takes no sessions: exit 0 within a few seconds', async () => {
    proxy = await TcpProxy.start(fx.cluster.port);
    const viaProxy = fx.cluster.url().replace(`:${fx.cluster.port}/`, `:${proxy.port}/`);
    const archiver = new PitrProcess([
      'archive',
      '--source',
      viaProxy,
      '--repo',
      fx.repoDir,
      '--segment-age',
      '200ms',
      '--heartbeat',
      '1s',
      '--log-level',
      'debug',
    ]);
    await archiver.waitForState('streaming');
    proxy.holdNewConnections = true;
    await fx.cluster.query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'pitr'");
    await archiver.waitFor(
      (l) => l.event === 'state' && l.to === 'connecting' && archiver.lines.some((b) => b.event === 'state' && b.to === 'backoff'),
      60_000,
    );
    archiver.child.kill('SIGTERM');
    expect(await exitWithin(archiver, HANG_MS)).toBe(0);
  });
});

describe('uploads failing', () => {
  let cluster: PgCluster;
  let gcs: FakeGcsServer;
  const REPO = 'gs://pitr-stop/shop';

  beforeAll(async () => {
    cluster = await PgCluster.start();
    gcs = await FakeGcsServer.start();
    await cluster.query('CREATE TABLE items (id int PRIMARY KEY)');
    expect((await runPitr(['init', '--source', cluster.url(), '--repo', REPO, '--gcs-endpoint', gcs.url])).code).toBe(0);
  });
  afterAll(async () => {
    await cluster.destroy();
    await gcs.close();
  });

  test('SIGTERM while uploads keep failing: stops within a few seconds, acknowledges nothing unstored, says what it waited for; the next run archives it', async () => {
    const archive = (): PitrProcess =>
      new PitrProcess([
        'archive',
        '--source',
        cluster.url(),
        '--repo',
        REPO,
        '--gcs-endpoint',
        gcs.url,
        '--segment-age',
        '200ms',
        '--heartbeat',
        '1h',
        '--log-level',
        'debug',
      ]);
    const archiver = archive();
    await archiver.waitForState('streaming');
    await cluster.query('INSERT INTO items SELECT generate_series(1, 100)');
    await archiver.waitFor((l) => l.event === 'segment_stored');
    await caughtUp(cluster);
    gcs.failNext(1_000_000, { status: 503 }, on.uploads);
    await cluster.query('INSERT INTO items SELECT generate_series(101, 200)');
    // the storage client retries inside each upload before the archiver does: stop in the middle of that
    await pollUntil(
      async () => gcs.requests.filter((r) => r.fault !== undefined && on.uploads(r)).length,
      (failed) => failed >= 2,
      'failed uploads',
    );

    archiver.child.kill('SIGTERM');
    expect(await exitWithin(archiver, HANG_MS)).toBe(0);
    expect(archiver.lines.some((l) => l.event === 'stop_waiting' && l.for === 'segments to be stored')).toBe(true);
    expect(archiver.lines.find((l) => l.event === 'stopped_unstored')).toMatchObject({ segments: [expect.stringMatching(/^segments\//)] });

    gcs.clearFaults();
    const next = archive();
    await next.waitForState('streaming');
    await caughtUp(cluster);
    expect(await next.stop()).toBe(0);
    const repo = new Repository(new GcsStorage({ bucket: 'pitr-stop', prefix: 'shop', apiEndpoint: gcs.url }));
    const ids: number[] = [];
    for await (const txn of readTransactions(repo))
      for (const m of txn.messages) if (m.tag === 'I') ids.push(Number(valueText((m as InsertMessage).newTuple[0])));
    // rows 101 to 200 were never stored by the first run: had it acknowledged them, the server would not have sent them again
    expect(ids).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
  });
});
