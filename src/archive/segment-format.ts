/**
 * Segment layout (docs/format.md): the LZ4 frame(s) of an uncompressed stream that is
 *   magic "PITRSEG1" (8 bytes)
 *   records: u32 big-endian length, then that many bytes of one pgoutput message exactly as the server
 *   sent it (tag byte first: B, C, R, O, I, U, D, T, M; Type messages are not kept).
 * A segment holds whole transactions in commit order; every Relation message a change needs is in the
 * same segment before the change, so one segment decodes without the source or other segments.
 */
export const SEGMENT_MAGIC = Buffer.from('PITRSEG1', 'latin1');
export const FORMAT_VERSION = 1;
export const RECORD_HEADER_BYTES = 4;

/** pgoutput message tags (first byte). */
export const Tag = {
  Begin: 0x42, // B
  Commit: 0x43, // C
  Origin: 0x4f, // O
  Relation: 0x52, // R
  Type: 0x59, // Y
  Insert: 0x49, // I
  Update: 0x55, // U
  Delete: 0x44, // D
  Truncate: 0x54, // T
  Message: 0x4d, // M
} as const;

/** Prefixes of the logical messages pitr itself puts into the stream. */
export const MessagePrefix = {
  Ddl: 'pitr.ddl',
  Heartbeat: 'pitr.heartbeat',
  Mark: 'pitr.mark',
} as const;
