/**
 * Decoder for pgoutput logical replication messages, protocol version 1 (PostgreSQL docs, "Logical
 * Replication Message Formats"). The archive stores these messages as raw bytes; this runs only when
 * the archive is read back, so it is strict: any byte it cannot account for is an error, never a guess.
 *
 * Text column values are kept exactly as the server's output function produced them. They depend on the
 * decoding session's settings (client_encoding, TimeZone, DateStyle, IntervalStyle, extra_float_digits,
 * bytea_output), so whoever opens the replication connection must pin those.
 */
import { PitrError } from '../errors';
import { formatLsn, readLsn, type Lsn } from '../pg/lsn';
import { pgMicrosToUnixMicros } from '../pg/pg-time';

export type ReplicaIdentity = 'd' | 'n' | 'f' | 'i';

export type TupleValue =
  | { kind: 'null' }
  /** An out-of-line TOASTed value the update did not change; the server does not resend it. */
  | { kind: 'unchanged' }
  | { kind: 'text'; value: string }
  | { kind: 'binary'; value: Buffer };

/** One value per column, in the column order of the latest Relation message for the table. */
export type TupleData = TupleValue[];

/** 'K': only the replica identity key columns carry values (the rest are null); 'O': the whole old row. */
export interface OldTuple {
  kind: 'K' | 'O';
  values: TupleData;
}

/** flags bit 1: part of the replica identity key (every column, under REPLICA IDENTITY FULL). */
export interface RelationColumn {
  flags: number;
  name: string;
  typeOid: number;
  typeModifier: number;
}

/** finalLsn is where the commit record starts, equal to the Commit's commitLsn; endLsn is where it ends. */
export interface BeginMessage {
  tag: 'B';
  finalLsn: Lsn;
  commitTime: bigint;
  xid: number;
}
export interface CommitMessage {
  tag: 'C';
  flags: number;
  commitLsn: Lsn;
  endLsn: Lsn;
  commitTime: bigint;
}
export interface OriginMessage {
  tag: 'O';
  commitLsn: Lsn;
  name: string;
}
/** Sent before a table's first change in each decoding session and again after its cache entry is
 * invalidated (ALTER TABLE, TRUNCATE), never per change: tuples cannot be read without the latest one. */
export interface RelationMessage {
  tag: 'R';
  relationId: number;
  /** Empty for pg_catalog: the server leaves the namespace out for it. */
  namespace: string;
  name: string;
  replicaIdentity: ReplicaIdentity;
  columns: RelationColumn[];
}
/** For a domain, typeOid is the domain's own OID but namespace/name are those of its base type. */
export interface TypeMessage {
  tag: 'Y';
  typeOid: number;
  namespace: string;
  name: string;
}
export interface InsertMessage {
  tag: 'I';
  relationId: number;
  newTuple: TupleData;
}
export interface UpdateMessage {
  tag: 'U';
  relationId: number;
  oldTuple?: OldTuple;
  newTuple: TupleData;
}
export interface DeleteMessage {
  tag: 'D';
  relationId: number;
  oldTuple: OldTuple;
}
export interface TruncateMessage {
  tag: 'T';
  relationIds: number[];
  cascade: boolean;
  restartIdentity: boolean;
}
/** lsn is the end of the message's WAL record (what pg_logical_emit_message returns). */
export interface LogicalMessage {
  tag: 'M';
  transactional: boolean;
  lsn: Lsn;
  prefix: string;
  content: Buffer;
}

export type PgoutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | RelationMessage
  | TypeMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage;

export type PgoutputTag = PgoutputMessage['tag'];

const TRUNCATE_CASCADE = 1;
const TRUNCATE_RESTART_IDENTITY = 2;
const MESSAGE_TRANSACTIONAL = 1;

/** Tags of later protocol versions (streaming, two-phase), named so the error says what was met. */
const LATER_PROTOCOL_TAGS: Record<string, string> = {
  S: 'Stream Start',
  E: 'Stream Stop',
  c: 'Stream Commit',
  A: 'Stream Abort',
  b: 'Begin Prepare',
  P: 'Prepare',
  K: 'Commit Prepared',
  r: 'Rollback Prepared',
  p: 'Stream Prepare',
};

// fatal: invalid UTF-8 must fail rather than turn into U+FFFD; ignoreBOM: a leading U+FEFF is data.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function tagName(byte: number): string {
  return byte >= 0x20 && byte < 0x7f ? `'${String.fromCharCode(byte)}' (0x${byte.toString(16).padStart(2, '0')})` : `0x${byte.toString(16).padStart(2, '0')}`;
}

function decodeError(message: string): PitrError {
  return new PitrError(
    'Integrity',
    `cannot decode pgoutput message: ${message}`,
    'the archived change data is corrupt or was written by an unsupported protocol version',
  );
}

/** Sequential reader with bounds checks, so a short buffer names the field that was cut off. */
class Reader {
  offset = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}

  private need(bytes: number, field: string): number {
    const at = this.offset;
    if (at + bytes > this.buf.length) throw decodeError(`${this.what} message truncated reading ${field} at offset ${at} (${this.buf.length} bytes in all)`);
    this.offset += bytes;
    return at;
  }
  u8(field: string): number {
    return this.buf.readUInt8(this.need(1, field));
  }
  i16(field: string): number {
    return this.buf.readInt16BE(this.need(2, field));
  }
  u32(field: string): number {
    return this.buf.readUInt32BE(this.need(4, field));
  }
  i32(field: string): number {
    return this.buf.readInt32BE(this.need(4, field));
  }
  lsn(field: string): Lsn {
    return readLsn(this.buf, this.need(8, field));
  }
  /** PostgreSQL-epoch microseconds on the wire, Unix-epoch microseconds out. */
  timestamp(field: string): bigint {
    return pgMicrosToUnixMicros(this.buf.readBigInt64BE(this.need(8, field)));
  }
  bytes(length: number, field: string): Buffer {
    const at = this.need(length, field);
    // A copy: callers keep values long after the (possibly pooled) message buffer is reused.
    return Buffer.from(this.buf.subarray(at, at + length));
  }
  text(length: number, field: string): string {
    const at = this.need(length, field);
    return this.utf8(at, at + length, field);
  }
  /** NUL-terminated string. */
  cstring(field: string): string {
    const end = this.buf.indexOf(0, this.offset);
    if (end < 0) throw decodeError(`${this.what} message truncated: ${field} at offset ${this.offset} has no terminating NUL`);
    const start = this.offset;
    this.offset = end + 1;
    return this.utf8(start, end, field);
  }
  private utf8(start: number, end: number, field: string): string {
    try {
      return utf8.decode(this.buf.subarray(start, end));
    } catch {
      throw decodeError(`${this.what} message: ${field} at offset ${start} is not valid UTF-8 (the decoding session must use client_encoding UTF8)`);
    }
  }
  finish(): void {
    if (this.offset !== this.buf.length)
      throw decodeError(`${this.what} message has ${this.buf.length - this.offset} unexpected trailing bytes at offset ${this.offset}`);
  }
}

function readTuple(r: Reader): TupleData {
  const count = r.i16('column count');
  if (count < 0) throw decodeError(`negative column count ${count}`);
  const values: TupleData = [];
  for (let i = 0; i < count; i++) {
    const kind = r.u8(`column ${i} kind`);
    if (kind === 0x6e /* n */) values.push({ kind: 'null' });
    else if (kind === 0x75 /* u */) values.push({ kind: 'unchanged' });
    else if (kind === 0x74 /* t */) values.push({ kind: 'text', value: r.text(lengthOf(r, i), `column ${i} text`) });
    else if (kind === 0x62 /* b */) values.push({ kind: 'binary', value: r.bytes(lengthOf(r, i), `column ${i} binary`) });
    else throw decodeError(`column ${i} has unknown value kind ${tagName(kind)}`);
  }
  return values;
}

function lengthOf(r: Reader, column: number): number {
  const length = r.i32(`column ${column} length`);
  if (length < 0) throw decodeError(`column ${column} has negative length ${length}`);
  return length;
}

function expectByte(r: Reader, expected: string, field: string): void {
  const byte = r.u8(field);
  if (byte !== expected.charCodeAt(0)) throw decodeError(`expected '${expected}' before ${field}, found ${tagName(byte)}`);
}

function readOldTuple(r: Reader, kind: number): OldTuple {
  return { kind: kind === 0x4b ? 'K' : 'O', values: readTuple(r) };
}

function decodeBody(tag: string, r: Reader): PgoutputMessage {
  switch (tag) {
    case 'B':
      return { tag, finalLsn: r.lsn('final LSN'), commitTime: r.timestamp('commit time'), xid: r.u32('xid') };
    case 'C':
      return { tag, flags: r.u8('flags'), commitLsn: r.lsn('commit LSN'), endLsn: r.lsn('end LSN'), commitTime: r.timestamp('commit time') };
    case 'O':
      return { tag, commitLsn: r.lsn('origin commit LSN'), name: r.cstring('origin name') };
    case 'R': {
      const relationId = r.u32('relation id');
      const namespace = r.cstring('namespace');
      const name = r.cstring('relation name');
      const identity = String.fromCharCode(r.u8('replica identity'));
      if (identity !== 'd' && identity !== 'n' && identity !== 'f' && identity !== 'i')
        throw decodeError(`relation ${relationId} has unknown replica identity '${identity}'`);
      const count = r.i16('column count');
      const columns: RelationColumn[] = [];
      for (let i = 0; i < count; i++) {
        columns.push({
          flags: r.u8(`column ${i} flags`),
          name: r.cstring(`column ${i} name`),
          typeOid: r.u32(`column ${i} type`),
          typeModifier: r.i32(`column ${i} typmod`),
        });
      }
      return { tag, relationId, namespace, name, replicaIdentity: identity, columns };
    }
    case 'Y':
      return { tag, typeOid: r.u32('type OID'), namespace: r.cstring('type namespace'), name: r.cstring('type name') };
    case 'I': {
      const relationId = r.u32('relation id');
      expectByte(r, 'N', 'new tuple');
      return { tag, relationId, newTuple: readTuple(r) };
    }
    case 'U': {
      const relationId = r.u32('relation id');
      const marker = r.u8('tuple marker');
      if (marker === 0x4b || marker === 0x4f) {
        const oldTuple = readOldTuple(r, marker);
        expectByte(r, 'N', 'new tuple');
        return { tag, relationId, oldTuple, newTuple: readTuple(r) };
      }
      if (marker !== 0x4e) throw decodeError(`update of relation ${relationId} has unknown tuple marker ${tagName(marker)}`);
      return { tag, relationId, newTuple: readTuple(r) };
    }
    case 'D': {
      const relationId = r.u32('relation id');
      const marker = r.u8('tuple marker');
      if (marker !== 0x4b && marker !== 0x4f) throw decodeError(`delete from relation ${relationId} has unknown tuple marker ${tagName(marker)}`);
      return { tag, relationId, oldTuple: readOldTuple(r, marker) };
    }
    case 'T': {
      const count = r.i32('relation count');
      const options = r.u8('options');
      const relationIds: number[] = [];
      for (let i = 0; i < count; i++) relationIds.push(r.u32(`relation id ${i}`));
      return { tag, relationIds, cascade: (options & TRUNCATE_CASCADE) !== 0, restartIdentity: (options & TRUNCATE_RESTART_IDENTITY) !== 0 };
    }
    case 'M': {
      const transactional = (r.u8('flags') & MESSAGE_TRANSACTIONAL) !== 0;
      const lsn = r.lsn('message LSN');
      const prefix = r.cstring('prefix');
      const length = r.i32('content length');
      if (length < 0) throw decodeError(`logical message at ${formatLsn(lsn)} has negative length ${length}`);
      return { tag, transactional, lsn, prefix, content: r.bytes(length, 'content') };
    }
    default:
      throw decodeError('unreachable');
  }
}

const TAG_NAMES: Record<string, string> = {
  B: 'Begin',
  C: 'Commit',
  O: 'Origin',
  R: 'Relation',
  Y: 'Type',
  I: 'Insert',
  U: 'Update',
  D: 'Delete',
  T: 'Truncate',
  M: 'Message',
};

/** The tag byte as a character; cheap enough for routing before a full decode. */
export function messageTag(buf: Buffer): string {
  if (buf.length === 0) throw decodeError('empty message');
  return String.fromCharCode(buf.readUInt8(0));
}

/** Relation id of an Insert, Update, Delete or Relation message, read without decoding tuples; undefined for other tags. */
export function peekRelationId(buf: Buffer): number | undefined {
  const tag = messageTag(buf);
  if (tag !== 'I' && tag !== 'U' && tag !== 'D' && tag !== 'R') return undefined;
  if (buf.length < 5) throw decodeError(`${TAG_NAMES[tag] ?? tag} message truncated reading relation id`);
  return buf.readUInt32BE(1);
}

/** Decodes one pgoutput (protocol 1) message: the XLogData payload, starting at its tag byte. */
export function decodePgoutput(buf: Buffer): PgoutputMessage {
  const tag = messageTag(buf);
  const byte = buf.readUInt8(0);
  const name = TAG_NAMES[tag];
  if (name === undefined) {
    const later = LATER_PROTOCOL_TAGS[tag];
    if (later !== undefined) throw decodeError(`tag ${tagName(byte)} is a ${later} message, which pgoutput protocol version 1 never sends`);
    throw decodeError(`unknown message tag ${tagName(byte)}`);
  }
  const r = new Reader(buf, name);
  r.offset = 1;
  const message = decodeBody(tag, r);
  r.finish();
  return message;
}
