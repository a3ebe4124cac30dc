import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Client } from 'pg';
import { copyOut } from '../../src/pg/copy-out-query';
import { PgCluster } from '../harness/pg-cluster';

/**
 * COPY data read straight off the socket: exactly the bytes psql receives, whatever the socket reads
 * cut through (headers split across reads included), and the session usable after an error of the
 * server or of the sink.
 */
let cluster: PgCluster;
let client: Client;

beforeAll(async () => {
  cluster = await PgCluster.start();
  await cluster.psql(`CREATE TABLE t (id int, v text, b bytea);
    INSERT INTO t SELECT g, repeat(chr(65 + g % 26), g % 700) || E'\\t\\\\x\\n' || g, decode(md5(g::text), 'hex') FROM generate_series(1, 60000) g;
    INSERT INTO t VALUES (0, '', NULL), (-1, NULL, '\\x');`);
  client = new Client({ connectionString: cluster.url() });
  await client.connect();
}, 60_000);

afterAll(async () => {
  await client.end();
  await cluster.destroy();
});

const collect = async (sql: string, slowly = false): Promise<{ rows: number; bytes: Buffer }> => {
  const pieces: Buffer[] = [];
  let calls = 0;
  const rows = await copyOut(client, sql, {
    write: (bytes) => pieces.push(Buffer.from(bytes)),
    // now and then wait a little, so reads pile up and are cut at other places
    backpressure: () => (slowly && ++calls % 7 === 0 ? new Promise((resolve) => setTimeout(resolve, 2)) : undefined),
  });
  return { rows, bytes: Buffer.concat(pieces) };
};

const psqlCopy = (sql: string): Buffer =>
  execFileSync(path.join(cluster.binDir, 'psql'), ['-X', '-q', '-d', cluster.url(), '-c', sql], { maxBuffer: 512 * 1024 * 1024 });

test.each([false, true])('a COPY gives exactly what psql receives, and its row count (paused now and then: %s)', async (slowly) => {
  const sql = 'COPY t TO STDOUT';
  const got = await collect(sql, slowly);
  expect(got.rows).toBe(60002);
  expect(got.bytes.equals(psqlCopy(sql))).toBe(true);
  expect((await client.query<{ n: number }>('SELECT 1 AS n')).rows).toEqual([{ n: 1 }]);
});

test('an empty result, and a COPY of a query', async () => {
  expect(await collect('COPY (SELECT 1 WHERE false) TO STDOUT')).toEqual({ rows: 0, bytes: Buffer.alloc(0) });
  const sql = `COPY (SELECT id, v FROM t WHERE ctid >= '(10,0)'::tid AND ctid < '(200,0)'::tid) TO STDOUT`;
  expect((await collect(sql)).bytes.equals(psqlCopy(sql))).toBe(true);
});

test('an error of the server in the middle of the COPY rejects with it; the session goes on', async () => {
  const failing = copyOut(client, 'COPY (SELECT CASE WHEN g = 50000 THEN 1 / 0 ELSE g END FROM generate_series(1, 100000) g) TO STDOUT', {
    write: () => undefined,
    backpressure: () => undefined,
  });
  await expect(failing).rejects.toThrow('division by zero');
  expect((await client.query<{ n: number }>('SELECT 2 AS n')).rows).toEqual([{ n: 2 }]);
});

test('an error of the sink rejects with it once the rest is read and dropped; the session goes on', async () => {
  let calls = 0;
  const failing = copyOut(client, 'COPY t TO STDOUT', {
    write: () => {
      if (++calls === 3) throw new Error('disk full');
    },
    backpressure: () => undefined,
  });
  await expect(failing).rejects.toThrow('disk full');
  expect(calls).toBe(3);
  expect((await client.query<{ n: number }>('SELECT 3 AS n')).rows).toEqual([{ n: 3 }]);
});
