import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type { PitrError } from '../../src/errors';
import { checkNoOtherWriter } from '../../src/archive/lease-decision';
import { thisProcess, type LeaseHolder } from '../../src/archive/lease-holder';
import { LEASE_PREFIX, readCurrentLease } from '../../src/archive/lease-record';
import { RepositoryLease } from '../../src/archive/repository-lease';
import { createLogger } from '../../src/logger';
import { GcsStorage } from '../../src/storage/gcs/gcs-storage';
import { LocalStorage } from '../../src/storage/local/local-storage';
import type { Storage } from '../../src/storage/storage';
import { FakeGcsServer } from '../fake-gcs/fake-gcs-server';
import { pollUntil } from '../harness/poll-until';

/** A log whose lines the tests can read. */
function recordingLog(): { log: ReturnType<typeof createLogger>; events: () => Record<string, unknown>[] } {
  const sink = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  sink.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  return { log: createLogger('debug', sink), events: () => lines };
}

const source = { systemIdentifier: '7300000000000000001', database: 'shop' };
const archiverOf = (slot: string, host?: string): LeaseHolder => ({
  ...thisProcess({ command: 'archive', slot, ...source }),
  ...(host ? { host } : {}),
});

/** A pid that certainly belongs to no process any more. */
function exitedPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

interface Backend {
  name: string;
  open(): Promise<Storage>;
  /** Makes the newest lease generation look `ms` older to the storage. */
  age(storage: Storage, ms: number): Promise<void>;
  close(): Promise<void>;
}

let gcs: FakeGcsServer | undefined;
let dir: string | undefined;
const backends: Backend[] = [
  {
    name: 'local',
    open: async () => new LocalStorage((dir = mkdtempSync(path.join(tmpdir(), 'pitr-lease-')))),
    age: async (storage, ms) => {
      const current = await readCurrentLease(storage);
      const when = new Date(Date.now() - ms);
      utimesSync(path.join(dir as string, ...(current?.name ?? '').split('/')), when, when);
    },
    close: async () => rmSync(dir as string, { recursive: true, force: true }),
  },
  {
    name: 'GCS',
    open: async () => {
      gcs = await FakeGcsServer.start();
      return new GcsStorage({ bucket: 'pitr-lease', prefix: 'repo', apiEndpoint: gcs.url, retry: { attempts: 3, baseDelayMs: 5, maxDelayMs: 20 } });
    },
    age: async (storage, ms) => {
      const current = await readCurrentLease(storage);
      const object = gcs?.getObject('pitr-lease', `repo/${current?.name ?? ''}`);
      if (object) object.created = new Date(object.created.getTime() - ms);
    },
    close: async () => gcs?.close(),
  },
];

describe.each(backends)('writer lease on $name storage', (backend) => {
  let storage: Storage;
  const held: RepositoryLease[] = [];
  const { log, events } = recordingLog();
  const options = { ttlMs: 30_000, takeover: false, log };

  beforeEach(async () => {
    storage = await backend.open();
  });
  afterEach(async () => {
    for (const lease of held.splice(0)) lease.stopRenewing();
    await backend.close();
  });

  const acquire = async (holder: LeaseHolder, extra: Partial<typeof options> = {}): Promise<RepositoryLease> => {
    const lease = await RepositoryLease.acquire(storage, holder, { ...options, ...extra });
    held.push(lease);
    return lease;
  };
  const refusal = (promise: Promise<unknown>): Promise<PitrError> =>
    promise.then(
      () => {
        throw new Error('expected a refusal');
      },
      (e: unknown) => e as PitrError,
    );

  test('one writer at a time: a second is refused naming the first; after a release the next one gets the next token', async () => {
    const first = await acquire(archiverOf('pitr', 'db-archiver-1'));
    expect(first.token).toBe(1);
    const error = await refusal(acquire(archiverOf('pitr2')));
    expect(error.kind).toBe('Busy');
    expect(error.message).toMatch(
      /^repository \S+ is being written by another archiver: slot "pitr" of database "shop" \(system identifier \d+\) on host db-archiver-1 \(pid \d+\), lease renewed \d+\.\d s ago$/,
    );
    expect(error.hint).toMatch(/give slot "pitr2" its own --repo/);
    await first.release();
    const second = await acquire(archiverOf('pitr2'));
    expect(second.token).toBe(2);
    await second.fence();
  });

  test('two writers racing for a free lease: exactly one gets it', async () => {
    const outcomes = await Promise.allSettled([acquire(archiverOf('a', 'host-a')), acquire(archiverOf('b', 'host-b'))]);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    expect(outcomes.filter((o) => o.status === 'rejected').map((o) => ((o as PromiseRejectedResult).reason as PitrError).kind)).toEqual(['Busy']);
  });

  test('renewals create the next generation and keep only the last two', async () => {
    const lease = await acquire(archiverOf('pitr'), { ttlMs: 300 });
    lease.startRenewing(() => undefined);
    await pollUntil(
      async () => (await readCurrentLease(storage))?.record.generation ?? 0,
      (generation) => generation >= 4,
      'three renewals',
    );
    lease.stopRenewing();
    const { objects } = await storage.list(LEASE_PREFIX);
    expect(objects.length).toBeLessThanOrEqual(3); // the newest two, and perhaps one whose removal is on its way
    await lease.fence();
  });

  test('--takeover takes a live lease; the old holder notices at its next fence, and its renewal fails too', async () => {
    const old = await acquire(archiverOf('pitr', 'db-archiver-1'));
    let told: PitrError | undefined;
    old.startRenewing((error) => (told = error));
    const taker = await acquire(archiverOf('pitr2'), { takeover: true });
    expect(taker.token).toBe(2);
    const error = await refusal(old.fence());
    expect(error.kind).toBe('Busy');
    expect(error.message).toMatch(/^lost the lease of repository \S+ to slot "pitr2" .*: this archiver stopped before storing another segment/);
    expect(told).toBe(error);
    expect(events().some((l) => l.event === 'lease_taken_over' && l.reason === 'takeover')).toBe(true);
    await taker.fence();
  });

  test('a lease not renewed for its ttl by the storage clock has expired and is taken over', async () => {
    await acquire(archiverOf('pitr', 'gone-machine'), { ttlMs: 60_000 });
    await expect(refusal(acquire(archiverOf('pitr2')))).resolves.toMatchObject({ kind: 'Busy' });
    await backend.age(storage, 61_000);
    const taker = await acquire(archiverOf('pitr2'));
    expect(taker.token).toBe(2);
    expect(events().some((l) => l.event === 'lease_taken_over' && l.reason === 'expired')).toBe(true);
  });

  test('a holder on this machine whose process is gone (kill -9) is taken over at once', async () => {
    await acquire({ ...archiverOf('pitr'), pid: exitedPid(), instance: 'dead' });
    const taker = await acquire(archiverOf('pitr'));
    expect(taker.token).toBe(2);
    expect(events().some((l) => l.event === 'lease_taken_over' && l.reason === 'holder-gone')).toBe(true);
  });

  test('an earlier run of the same archiver elsewhere: waited for, refused once it renews, taken over once it expires', async () => {
    const alive = await acquire(archiverOf('pitr', 'db-archiver-1'), { ttlMs: 1500 });
    alive.startRenewing(() => undefined);
    const error = await refusal(acquire(archiverOf('pitr')));
    expect(error.message).toMatch(/^replication slot "pitr" is in use by another archiver, which holds the lease of repository \S+: host db-archiver-1/);
    expect(events().some((l) => l.event === 'waiting_for_lease')).toBe(true);
    alive.stopRenewing(); // its machine goes down
    const next = await acquire(archiverOf('pitr'));
    expect(next.token).toBe(2);
  });

  test('init refuses while another slot writes, and goes on for the same slot, a released lease or --takeover', async () => {
    const writer = await acquire(archiverOf('pitr', 'db-archiver-1'));
    const init = (slot: string, takeover = false): ReturnType<typeof checkNoOtherWriter> =>
      readCurrentLease(storage).then((current) => checkNoOtherWriter(storage, current, archiverOf(slot), takeover));
    await expect(init('pitr2')).rejects.toMatchObject({ kind: 'Busy', message: expect.stringMatching(/is being written by another archiver/) as string });
    await expect(init('pitr')).resolves.toMatchObject({ kind: 'wait' });
    await expect(init('pitr2', true)).resolves.toMatchObject({ kind: 'take', reason: 'takeover' });
    await writer.release();
    await expect(init('pitr2')).resolves.toEqual({ kind: 'free' });
  });
});
