import { execFileSync } from 'node:child_process';
import { chownSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { parseLsn, type Lsn } from '../../src/pg/lsn';
import { nowUnixMicros, PG_EPOCH_OFFSET_MICROS } from '../../src/pg/pg-time';
import {
  decodePgoutput,
  messageTag,
  peekRelationId,
  type BeginMessage,
  type CommitMessage,
  type PgoutputMessage,
  type TupleData,
} from '../../src/archive/pgoutput-decoder';
import { PgCluster } from '../harness/pg-cluster';
import { expectedTextRows, TYPE_ZOO_COLUMNS, TYPE_ZOO_INSERT_SQL, TYPE_ZOO_SETUP_SQL, ZOO_NULL_ROW } from '../fixtures/type-zoo';

const PEEK = `SELECT lsn::text AS lsn, xid::text AS xid, data FROM pg_logical_slot_peek_binary_changes('s', NULL, NULL,
  'proto_version', '1', 'publication_names', 'pub', 'messages', 'true')`;

interface Change {
  lsn: Lsn;
  xid: number;
  raw: Buffer;
  message: PgoutputMessage;
}
interface Txn {
  begin: BeginMessage;
  body: PgoutputMessage[];
  commit: CommitMessage;
  peekXid: number;
}

async function peek(client: Client): Promise<Change[]> {
  // Decoding stops at the flushed WAL position, and the test clusters commit asynchronously.
  await client.query('CHECKPOINT');
  const { rows } = await client.query<{ lsn: string; xid: string; data: Buffer }>(PEEK);
  return rows.map((row) => ({ lsn: parseLsn(row.lsn), xid: Number(row.xid), raw: row.data, message: decodePgoutput(row.data) }));
}

/** Groups the stream into Begin…Commit transactions; anything between them is non-transactional. */
function group(changes: Change[]): { txns: Txn[]; outside: PgoutputMessage[] } {
  const txns: Txn[] = [];
  const outside: PgoutputMessage[] = [];
  let open: { begin: BeginMessage; body: PgoutputMessage[]; peekXid: number } | undefined;
  for (const { message, xid } of changes) {
    if (message.tag === 'B') {
      expect(open).toBeUndefined();
      open = { begin: message, body: [], peekXid: xid };
    } else if (message.tag === 'C') {
      if (!open) throw new Error('commit without begin');
      txns.push({ ...open, commit: message });
      open = undefined;
    } else if (open) open.body.push(message);
    else outside.push(message);
  }
  expect(open).toBeUndefined();
  return { txns, outside };
}

const text = (value: string): TupleData[number] => ({ kind: 'text', value });
const asTuple = (row: readonly (string | null)[]): TupleData => row.map((v) => (v === null ? { kind: 'null' } : text(v)));
const insertedValues = (txn: Txn, relationId: number): string[] =>
  txn.body.flatMap((m) => (m.tag === 'I' && m.relationId === relationId && m.newTuple[0]?.kind === 'text' ? [m.newTuple[0].value] : []));

/** Column by column, so a mismatch names the column instead of diffing two 46-element arrays. */
function expectZooTuple(actual: TupleData, expected: TupleData): void {
  expect(actual).toHaveLength(TYPE_ZOO_COLUMNS.length);
  TYPE_ZOO_COLUMNS.forEach((column, i) => expect([column, actual[i]]).toEqual([column, expected[i]]));
}

describe('pgoutput decoder against PostgreSQL', () => {
  let cluster: PgCluster;
  let client: Client;
  let txns: Txn[];
  let outside: PgoutputMessage[];
  let changes: Change[];
  let inserted: Map<number, (string | null)[]>;
  let updated: Map<number, (string | null)[]>;
  let messageLsn: Lsn;
  const oids: Record<string, number> = {};
  const xids: Record<'a' | 'b', number> = { a: 0, b: 0 };

  beforeAll(async () => {
    cluster = await PgCluster.start();
    client = new Client({ connectionString: cluster.url() });
    await client.connect();
    await client.query(TYPE_ZOO_SETUP_SQL);
    await client.query(`CREATE TABLE full_ident (id int PRIMARY KEY, note text, big text);
      ALTER TABLE full_ident REPLICA IDENTITY FULL;
      CREATE TABLE parent (id serial PRIMARY KEY); CREATE TABLE child (id serial, parent_id int REFERENCES parent);
      CREATE TABLE plain (x int); CREATE TABLE interleave (v text)`);
    const lookup = async (fn: 'to_regclass' | 'to_regtype', names: string[]): Promise<void> => {
      for (const name of names) oids[name] = (await client.query<{ oid: number }>(`SELECT ${fn}($1)::oid AS oid`, [name])).rows[0]?.oid ?? 0;
    };
    await lookup('to_regclass', ['type_zoo', 'full_ident', 'parent', 'child', 'plain', 'interleave']);
    await lookup('to_regtype', ['zoo_short_text', 'zoo_mood', '_zoo_mood', 'zoo_pair']); // zoo_pair is also a relation
    await client.query('CREATE PUBLICATION pub FOR ALL TABLES');
    await client.query("SELECT pg_create_logical_replication_slot('s', 'pgoutput')");

    await client.query(TYPE_ZOO_INSERT_SQL);
    inserted = await expectedTextRows(client);
    await client.query('UPDATE type_zoo SET c_integer = 42 WHERE id = 1'); // big TOASTed column untouched
    await client.query('UPDATE type_zoo SET id = 103 WHERE id = 3'); // key change: old key sent
    await client.query('DELETE FROM type_zoo WHERE id = 2');
    updated = await expectedTextRows(client, [1, 103]);

    await client.query("INSERT INTO full_ident SELECT 1, 'first', string_agg(md5(i::text), '') FROM generate_series(1, 1000) i");
    await client.query("UPDATE full_ident SET note = 'second'");
    await client.query('DELETE FROM full_ident');
    await client.query('INSERT INTO parent DEFAULT VALUES; INSERT INTO child (parent_id) VALUES (1)');
    await client.query('TRUNCATE parent RESTART IDENTITY CASCADE');
    await client.query('TRUNCATE plain');
    const emitted = await client.query<{ lsn: string }>("SELECT pg_logical_emit_message(true, 'pitr.test', 'hello')::text AS lsn");
    messageLsn = parseLsn(emitted.rows[0]?.lsn ?? '');
    await client.query("SELECT pg_logical_emit_message(false, 'pitr.nontx', '\\x00ff'::bytea)");

    // a begins first, b commits first: decoding must follow commit order and keep each transaction whole.
    const [a, b] = [new Client({ connectionString: cluster.url() }), new Client({ connectionString: cluster.url() })];
    await Promise.all([a.connect(), b.connect()]);
    const xidOf = async (c: Client): Promise<number> => Number((await c.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]?.x);
    await a.query("BEGIN; INSERT INTO interleave VALUES ('a1')");
    xids.a = await xidOf(a);
    await b.query("BEGIN; INSERT INTO interleave VALUES ('b1')");
    xids.b = await xidOf(b);
    await a.query("INSERT INTO interleave VALUES ('a2')");
    await b.query('COMMIT');
    await a.query('COMMIT');
    await Promise.all([a.end(), b.end()]);

    changes = await peek(client);
    ({ txns, outside } = group(changes));
  });

  afterAll(async () => {
    await client?.end();
    await cluster?.destroy();
  });

  const oid = (name: string): number => {
    const value = oids[name];
    if (value === undefined) throw new Error(`no OID looked up for ${name}`);
    return value;
  };
  const zooTxn = (): Txn => {
    const txn = txns.find((t) => insertedValues(t, oid('type_zoo')).length > 0);
    if (!txn) throw new Error('no transaction inserted into type_zoo');
    return txn;
  };

  test('every zoo column decodes to exactly the text the server output function produced', () => {
    const rows = insertedValues(zooTxn(), oid('type_zoo'));
    expect(rows).toEqual(['1', '2', '3', '4', '5', '6', '7', '8']);
    for (const m of zooTxn().body) {
      if (m.tag !== 'I') continue;
      const id = Number(m.newTuple[0]?.kind === 'text' ? m.newTuple[0].value : NaN);
      expectZooTuple(m.newTuple, asTuple(inserted.get(id) ?? []));
    }
    const row = (id: number): TupleData =>
      zooTxn().body.flatMap((m) => (m.tag === 'I' && m.newTuple[0]?.kind === 'text' && m.newTuple[0].value === String(id) ? m.newTuple : []));
    expect(
      row(ZOO_NULL_ROW)
        .slice(1)
        .every((v) => v.kind === 'null'),
    ).toBe(true);
    const textColumn = TYPE_ZOO_COLUMNS.indexOf('c_text');
    expect(row(5)[textColumn]).toEqual(text('')); // empty string, not NULL
    expect(inserted.get(3)?.[textColumn]?.startsWith('\uFEFF')).toBe(true); // and the row compared above kept its BOM
    const big = row(1)[TYPE_ZOO_COLUMNS.indexOf('c_big_text')];
    expect(big?.kind === 'text' && Buffer.byteLength(big.value) > 1_000_000).toBe(true);
  });

  test('relation and type metadata match the catalog', async () => {
    const relation = zooTxn().body.find((m) => m.tag === 'R' && m.relationId === oids.type_zoo);
    const { rows } = await client.query<{ attname: string; atttypid: number; atttypmod: number }>(
      'SELECT attname, atttypid, atttypmod FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum',
      [oids.type_zoo],
    );
    expect(relation).toEqual({
      tag: 'R',
      relationId: oids.type_zoo,
      namespace: 'public',
      name: 'type_zoo',
      replicaIdentity: 'd',
      columns: rows.map((r) => ({ flags: r.attname === 'id' ? 1 : 0, name: r.attname, typeOid: r.atttypid, typeModifier: r.atttypmod })),
    });
    const types = zooTxn().body.filter((m) => m.tag === 'Y');
    expect(types).toEqual(
      expect.arrayContaining([
        { tag: 'Y', typeOid: oids.zoo_mood, namespace: 'public', name: 'zoo_mood' },
        { tag: 'Y', typeOid: oids._zoo_mood, namespace: 'public', name: '_zoo_mood' },
        { tag: 'Y', typeOid: oids.zoo_pair, namespace: 'public', name: 'zoo_pair' },
        // A domain is announced under its own OID but with its base type's name, and pg_catalog as ''.
        { tag: 'Y', typeOid: oids.zoo_short_text, namespace: '', name: 'text' },
      ]),
    );
    expect(types).toHaveLength(4); // built-in types are never announced
  });

  test('updates send unchanged TOAST as unchanged, key changes send the old key, deletes the key', () => {
    const ofZoo = txns.flatMap((t) => t.body).filter((m) => (m.tag === 'U' || m.tag === 'D') && m.relationId === oids.type_zoo);
    const [small, keyChange, del] = ofZoo;
    const bigColumn = TYPE_ZOO_COLUMNS.indexOf('c_big_text');
    const expectUnchangedBig = (row: readonly (string | null)[] | undefined): TupleData =>
      asTuple(row ?? []).map((v, i) => (i === bigColumn ? { kind: 'unchanged' } : v));
    if (small?.tag !== 'U' || keyChange?.tag !== 'U' || del?.tag !== 'D') throw new Error(`unexpected ${ofZoo.map((m) => m.tag).join()}`);
    expect(small.oldTuple).toBeUndefined();
    expectZooTuple(small.newTuple, expectUnchangedBig(updated.get(1)));
    const keyOnly = (id: string): TupleData => TYPE_ZOO_COLUMNS.map((_, i) => (i === 0 ? text(id) : { kind: 'null' }));
    expect(keyChange.oldTuple).toEqual({ kind: 'K', values: keyOnly('3') });
    expectZooTuple(keyChange.newTuple, expectUnchangedBig(updated.get(103)));
    expect(del.oldTuple).toEqual({ kind: 'K', values: keyOnly('2') });
  });

  test('replica identity full sends the whole old row, TOASTed values included', () => {
    const body = txns.flatMap((t) => t.body).filter((m) => 'relationId' in m && m.relationId === oids.full_ident);
    const relation = body.find((m) => m.tag === 'R');
    expect(relation?.tag === 'R' && relation.replicaIdentity).toBe('f');
    expect(relation?.tag === 'R' && relation.columns.map((c) => c.flags)).toEqual([1, 1, 1]); // every column is "key"
    const insert = body.find((m) => m.tag === 'I');
    const big = insert?.tag === 'I' ? insert.newTuple[2] : undefined;
    const update = body.find((m) => m.tag === 'U');
    const del = body.find((m) => m.tag === 'D');
    expect(update?.tag === 'U' && update.oldTuple).toEqual({ kind: 'O', values: [text('1'), text('first'), big] });
    expect(update?.tag === 'U' && update.newTuple).toEqual([text('1'), text('second'), { kind: 'unchanged' }]);
    expect(del?.tag === 'D' && del.oldTuple).toEqual({ kind: 'O', values: [text('1'), text('second'), big] });
  });

  test('truncate lists every truncated relation with its options', () => {
    const truncates = txns.flatMap((t) => t.body).filter((m) => m.tag === 'T');
    expect(truncates).toEqual([
      { tag: 'T', relationIds: [oids.parent, oids.child], cascade: true, restartIdentity: true },
      { tag: 'T', relationIds: [oids.plain], cascade: false, restartIdentity: false },
    ]);
  });

  test('logical messages: transactional inside a transaction, the other outside any', () => {
    const tx = txns.flatMap((t) => t.body).find((m) => m.tag === 'M');
    // lsn is the end of the message record: what pg_logical_emit_message returned
    expect(tx).toEqual({ tag: 'M', transactional: true, lsn: messageLsn, prefix: 'pitr.test', content: Buffer.from('hello') });
    expect(outside).toHaveLength(1);
    expect(outside[0]).toMatchObject({ tag: 'M', transactional: false, prefix: 'pitr.nontx', content: Buffer.from([0, 0xff]) });
    expect(changes.find((c) => c.message === outside[0])?.xid).toBe(0);
  });

  test('interleaved transactions arrive whole, in commit order', () => {
    const a = txns.findIndex((t) => insertedValues(t, oid('interleave')).includes('a1'));
    const b = txns.findIndex((t) => insertedValues(t, oid('interleave')).includes('b1'));
    expect(b).toBeGreaterThan(-1);
    expect(a).toBe(b + 1);
    expect(insertedValues(txns[a] as Txn, oid('interleave'))).toEqual(['a1', 'a2']);
    expect([txns[a]?.begin.xid, txns[b]?.begin.xid]).toEqual([xids.a, xids.b]);
    expect(xids.a).toBeLessThan(xids.b);
  });

  test('begin and commit agree, LSNs ascend, times are recent microseconds, xids unsigned', () => {
    expect(txns).toHaveLength(13);
    const now = nowUnixMicros();
    let previous = 0n;
    for (const { begin, commit, peekXid } of txns) {
      expect(begin.finalLsn).toBe(commit.commitLsn);
      expect(begin.commitTime).toBe(commit.commitTime);
      expect(commit.endLsn).toBeGreaterThan(commit.commitLsn);
      expect(commit.commitLsn).toBeGreaterThan(previous);
      expect(commit.flags).toBe(0);
      previous = commit.commitLsn;
      expect(now - commit.commitTime < 600_000_000n && commit.commitTime - now < 600_000_000n).toBe(true);
      expect(begin.xid).toBe(peekXid);
      expect(Number.isInteger(begin.xid) && begin.xid >= 0 && begin.xid <= 0xffffffff).toBe(true);
    }
    expect(txns.some((t) => t.commit.commitTime % 1000n !== 0n)).toBe(true); // sub-millisecond precision kept
  });

  test('peek helpers agree with the full decode', () => {
    for (const { raw, message } of changes) {
      expect(messageTag(raw)).toBe(message.tag);
      expect(peekRelationId(raw)).toBe('relationId' in message ? message.relationId : undefined);
    }
  });

  test('text values depend on the decoding session settings, so the archiver must pin them', async () => {
    const other = new Client({ connectionString: cluster.url() });
    await other.connect();
    try {
      await other.query("SET DateStyle = 'German'; SET TimeZone = 'Asia/Kolkata'");
      const insert = (await peek(other)).find((c) => c.message.tag === 'I' && c.message.relationId === oids.type_zoo);
      const value = insert?.message.tag === 'I' ? insert.message.newTuple[TYPE_ZOO_COLUMNS.indexOf('c_timestamptz')] : undefined;
      expect(value).toEqual(text('22.11.2026 16:11:59.123456 IST'));
      await other.query("SET client_encoding = 'LATIN1'"); // values are converted to the client encoding
      await expect(peek(other)).rejects.toThrow(/has no equivalent in encoding "LATIN1"/);
    } finally {
      await other.end();
    }
  });
});

test('xids beyond 2^31 from a real server decode unsigned', async () => {
  const cluster = await PgCluster.start({ settings: { autovacuum: 'off' } });
  try {
    // Jump the xid counter past 2^31; pg_resetwal leaves the commit log segment for it to us. Only just
    // past: initdb's unfrozen rows (pg_database's "postgres", xmin ~700) must still compare as in the past.
    const nextXid = 2 ** 31 + 100;
    await cluster.stopServer();
    // binDir may hold only symlinks to initdb and pg_ctl; pg_resetwal lives next to their targets.
    const realBinDir = path.dirname(realpathSync(path.join(cluster.binDir, 'initdb')));
    const resetwal = [path.join(realBinDir, 'pg_resetwal'), '-x', String(nextXid), '-u', String(2 ** 31), cluster.dataDir];
    if (process.getuid?.() === 0) execFileSync('runuser', ['-u', 'postgres', '--', ...resetwal]);
    else execFileSync(resetwal[0] ?? 'pg_resetwal', resetwal.slice(1));
    const xactsPerSegment = 32 * 8192 * 4; // SLRU pages per segment × bytes per page × transactions per byte
    const segment = path.join(
      cluster.dataDir,
      'pg_xact',
      Math.floor(nextXid / xactsPerSegment)
        .toString(16)
        .toUpperCase()
        .padStart(4, '0'),
    );
    writeFileSync(segment, Buffer.alloc(256 * 1024));
    const owner = statSync(cluster.dataDir);
    chownSync(segment, owner.uid, owner.gid);
    await cluster.startServer();
    await cluster.withClient(async (client) => {
      await client.query('CREATE TABLE t (x int PRIMARY KEY); CREATE PUBLICATION pub FOR ALL TABLES');
      await client.query("SELECT pg_create_logical_replication_slot('s', 'pgoutput')");
      await client.query('INSERT INTO t VALUES (1)');
      const xid = await client.query<{ x: string }>('SELECT xmin::text AS x FROM t');
      const begin = (await peek(client))[0]?.message;
      expect(begin?.tag).toBe('B');
      expect(begin?.tag === 'B' && begin.xid).toBe(Number(xid.rows[0]?.x));
      expect(begin?.tag === 'B' && begin.xid).toBeGreaterThan(2 ** 31);
    });
  } finally {
    await cluster.destroy();
  }
});

describe('pgoutput decoder on hand-built messages', () => {
  const begin = (xid: number): Buffer => {
    const buf = Buffer.alloc(21);
    buf.write('B', 0, 'latin1');
    buf.writeBigUInt64BE(0x1_0000_0010n, 1);
    buf.writeBigInt64BE(0n, 9); // 2000-01-01 in PostgreSQL's epoch
    buf.writeUInt32BE(xid, 17);
    return buf;
  };

  test('xid, LSN and commit time are unsigned / rebased', () => {
    expect(decodePgoutput(begin(0xfffffffe))).toEqual({ tag: 'B', finalLsn: 0x1_0000_0010n, commitTime: PG_EPOCH_OFFSET_MICROS, xid: 4294967294 });
  });

  test('relation ids and type OIDs above 2^31 are unsigned, typmods signed', () => {
    const relation = Buffer.concat([
      Buffer.from('R'),
      Buffer.from([0xff, 0xff, 0xff, 0xf0]),
      Buffer.from('\0t\0n\x00\x01', 'latin1'),
      Buffer.from([1]),
      Buffer.from('c\0'),
      Buffer.from([0x80, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]),
    ]);
    expect(decodePgoutput(relation)).toEqual({
      tag: 'R',
      relationId: 0xfffffff0,
      namespace: '',
      name: 't',
      replicaIdentity: 'n',
      columns: [{ flags: 1, name: 'c', typeOid: 0x80000001, typeModifier: -1 }],
    });
    expect(peekRelationId(relation)).toBe(0xfffffff0);
  });

  test('unknown, later-protocol, truncated and malformed messages fail clearly', () => {
    expect(() => decodePgoutput(Buffer.from('Z'))).toThrow("unknown message tag 'Z' (0x5a)");
    expect(() => decodePgoutput(Buffer.from([0x01]))).toThrow('unknown message tag 0x01');
    expect(() => decodePgoutput(Buffer.from('S'))).toThrow(/Stream Start message, which pgoutput protocol version 1 never sends/);
    expect(() => decodePgoutput(Buffer.alloc(0))).toThrow('empty message');
    expect(() => decodePgoutput(begin(1).subarray(0, 20))).toThrow('Begin message truncated reading xid at offset 17 (20 bytes in all)');
    expect(() => decodePgoutput(Buffer.concat([begin(1), Buffer.from([0])]))).toThrow('Begin message has 1 unexpected trailing bytes at offset 21');
    const insert = (value: Buffer): Buffer => Buffer.concat([Buffer.from([0x49, 0, 0, 0, 1, 0x4e, 0, 1, 0x74, 0, 0, 0, value.length]), value]);
    expect(decodePgoutput(insert(Buffer.from('é😀')))).toEqual({ tag: 'I', relationId: 1, newTuple: [text('é😀')] });
    expect(() => decodePgoutput(insert(Buffer.from([0xc3])))).toThrow('column 0 text at offset 13 is not valid UTF-8');
  });
});
