import { mkdtempSync, readFileSync, rmSync, writeFileSync, createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SegmentBuilder } from '../../src/archive/segment-builder';
import { readSegmentRecords } from '../../src/archive/segment-reader';
import { decodeCheckedJson, encodeCheckedJson } from '../../src/archive/checked-json';

let dir: string;
beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'pitr-seg-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function build(records: Buffer[], chunkBytes: number): Promise<{ file: string; sha256: string; rawBytes: number }> {
  const file = path.join(dir, 'seg.lz4');
  const builder = SegmentBuilder.create(file, chunkBytes);
  for (const r of records) builder.append(r);
  const spooled = await builder.finish();
  return { file, sha256: spooled.sha256, rawBytes: spooled.rawBytes };
}

async function readAll(file: string, sha256: string): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const r of readSegmentRecords(createReadStream(file), 'segments/x', sha256)) out.push(Buffer.from(r));
  return out;
}

test('records round-trip across many LZ4 frames, including records larger than a chunk', async () => {
  const records = Array.from({ length: 5000 }, (_, i) => Buffer.from(`I${'x'.repeat(i % 300)}${i}`));
  records.push(Buffer.alloc(200_000, 7));
  const { file, sha256, rawBytes } = await build(records, 4096);
  expect(rawBytes).toBe(8 + records.reduce((n, r) => n + 4 + r.length, 0));
  expect(await readAll(file, sha256)).toEqual(records);
});

test('a flipped byte or a truncation is reported with the segment name', async () => {
  const records = Array.from({ length: 2000 }, (_, i) => Buffer.from(`record ${i}`));
  const { file, sha256 } = await build(records, 4096);
  const bytes = readFileSync(file);
  const flipped = Buffer.from(bytes);
  const middle = Math.floor(bytes.length / 2);
  flipped.writeUInt8(flipped.readUInt8(middle) ^ 0x01, middle);
  writeFileSync(file, flipped);
  await expect(readAll(file, sha256)).rejects.toThrow(/segment segments\/x (is corrupt|cannot be decoded)/);
  writeFileSync(file, bytes.subarray(0, bytes.length - 10));
  await expect(readAll(file, sha256)).rejects.toThrow(/segment segments\/x (is corrupt|cannot be decoded|is truncated)/);
});

test('checked JSON detects any change', () => {
  const bytes = encodeCheckedJson({ a: 1, lsn: '0/16B3748' });
  expect(decodeCheckedJson(bytes, 'm.json')).toEqual({ a: 1, lsn: '0/16B3748' });
  const tampered = Buffer.from(bytes.toString().replace('0/16B3748', '0/16B3749'));
  expect(() => decodeCheckedJson(tampered, 'm.json')).toThrow('object m.json is corrupt: checksum mismatch');
});
