import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { StreamAssembler } from '../../src/capture/stream-assembler';

const begin = (commitLsn: bigint): Buffer => {
  const b = Buffer.alloc(21);
  b.write('B', 0, 'latin1');
  b.writeBigUInt64BE(commitLsn, 1);
  b.writeBigInt64BE(1000n, 9);
  b.writeUInt32BE(3_000_000_000, 17);
  return b;
};
const commit = (commitLsn: bigint): Buffer => {
  const b = Buffer.alloc(26);
  b.write('C', 0, 'latin1');
  b.writeBigUInt64BE(commitLsn, 2);
  b.writeBigUInt64BE(commitLsn + 0x30n, 10);
  b.writeBigInt64BE(1000n, 18);
  return b;
};
const relation = Buffer.concat([Buffer.from('R'), Buffer.from([0, 0, 0x40, 0x01]), Buffer.from('public\0t\0d'), Buffer.from([0, 0])]);
const insert = Buffer.concat([Buffer.from('I'), Buffer.from([0, 0, 0x40, 0x01]), Buffer.from('N'), Buffer.from([0, 0])]);

let dir: string;
beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'pitr-asm-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function segmentBytes(messages: Buffer[], lastSealed = 0n): Promise<{ bytes: Buffer; transactions: number; first: bigint }> {
  const assembler = new StreamAssembler(dir, lastSealed);
  for (const m of messages) assembler.handle(m);
  const sealed = await assembler.seal();
  if (!sealed) throw new Error('nothing sealed');
  return { bytes: readFileSync(sealed.spooled.path), transactions: sealed.transactions, first: sealed.firstCommitLsn };
}

test('a segment is byte-identical whether or not the server repeated a Relation message mid-segment', async () => {
  const once = await segmentBytes([begin(0x100n), relation, insert, commit(0x100n), begin(0x200n), insert, commit(0x200n)]);
  const repeated = await segmentBytes([begin(0x100n), relation, insert, commit(0x100n), begin(0x200n), relation, insert, commit(0x200n)]);
  expect(repeated.bytes.equals(once.bytes)).toBe(true);
});

test('transactions at or below the last sealed commit are dropped as re-sent duplicates', async () => {
  const result = await segmentBytes([begin(0x100n), relation, insert, commit(0x100n), begin(0x200n), insert, commit(0x200n)], 0x100n);
  expect(result.transactions).toBe(1);
  expect(result.first).toBe(0x200n);
});
