import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { ddlAction } from '../archive/ddl-action';
import { parseDdlRecord } from '../archive/ddl-record';
import { SegmentBuilder, type SpooledSegment } from '../archive/segment-builder';
import { MessagePrefix, Tag } from '../archive/segment-format';
import type { ChangeCounts } from '../archive/segment-manifest';
import { PitrError } from '../errors';
import type { Lsn } from '../pg/lsn';
import { pgMicrosToUnixMicros } from '../pg/pg-time';
import type { HistoryCheck } from './history-check';

/** What a sealed segment holds, for its manifest. */
export interface SegmentContents {
  spooled: SpooledSegment;
  firstCommitLsn: Lsn;
  lastCommitLsn: Lsn;
  endLsn: Lsn;
  firstCommitTime: bigint;
  lastCommitTime: bigint;
  transactions: number;
  changes: ChangeCounts;
  tables: string[];
  marks: string[];
  ddl: number;
  /** Schema changes a restore could not replay (archived all the same): commit LSN, tag and why. */
  unreplayable: { commitLsn: Lsn; tag: string; reason: string }[];
  /** Tables the capture gave REPLICA IDENTITY FULL (created or altered without a usable one). */
  replicaIdentityFull: string[];
}

interface OpenSegment {
  builder: SegmentBuilder;
  startedAt: number;
  relationsWritten: Set<number>;
  stats: Omit<SegmentContents, 'spooled' | 'tables'> & { tables: Set<string> };
}

interface CachedRelation {
  message: Buffer;
  name: string;
}

/**
 * Turns the pgoutput stream into segments of whole transactions, reading only the few fields the
 * archive needs (tag, LSNs, commit time, relation id) and keeping every message's bytes as sent.
 * Terminology: a transaction is "sealed" once the segment holding it is closed; transactions with a
 * commit LSN at or below `lastSealedCommitLsn` are duplicates re-sent after a restart and are dropped.
 */
export class StreamAssembler {
  private readonly relations = new Map<number, CachedRelation>();
  private open: OpenSegment | undefined;
  private inTransaction = false;
  private skipping = false;
  private counter = 0;
  /** Commit LSN of the transaction being received (from its Begin). */
  private commitLsn: Lsn = 0n;
  /** When the stream starts before the archive's end: what the server sends again, checked Begin by Begin (history-check.ts). */
  history: HistoryCheck | undefined;

  constructor(
    private readonly spoolDir: string,
    public lastSealedCommitLsn: Lsn,
    private readonly chunkBytes = 1 << 20,
  ) {}

  /** No transaction half-received and nothing waiting to be sealed. */
  get idle(): boolean {
    return !this.inTransaction && this.open === undefined;
  }

  get betweenTransactions(): boolean {
    return !this.inTransaction;
  }

  get openRawBytes(): number {
    return this.open?.builder.rawBytes ?? 0;
  }

  get openAgeMs(): number {
    return this.open ? Date.now() - this.open.startedAt : 0;
  }

  get pendingCompressionBytes(): number {
    return this.open?.builder.pendingBytes ?? 0;
  }

  handle(message: Buffer): void {
    const tag = message[0];
    switch (tag) {
      case Tag.Begin: {
        const commitLsn = message.readBigUInt64BE(1);
        if (this.history?.pending) this.history.begin(commitLsn, message.readUInt32BE(17), message.readBigInt64BE(9));
        this.commitLsn = commitLsn;
        this.inTransaction = true;
        this.skipping = commitLsn <= this.lastSealedCommitLsn;
        if (!this.skipping) this.write(message);
        return;
      }
      case Tag.Commit: {
        if (!this.inTransaction) throw new PitrError('Internal', 'commit message outside a transaction');
        this.inTransaction = false;
        if (this.skipping) return;
        this.write(message);
        this.committed(message.readBigUInt64BE(2), message.readBigUInt64BE(10), pgMicrosToUnixMicros(message.readBigInt64BE(18)));
        return;
      }
      case Tag.Relation: {
        const relationId = message.readUInt32BE(1);
        const known = this.relations.get(relationId);
        const unchanged = known !== undefined && known.message.equals(message);
        if (!unchanged) this.relations.set(relationId, { message: Buffer.from(message), name: relationName(message) });
        // The server repeats Relation messages once per session; keep a segment's bytes independent of
        // where sessions began (a segment re-sent after a crash must come out byte-identical).
        if (!this.skipping && this.inTransaction && !(unchanged && this.open?.relationsWritten.has(relationId))) {
          this.write(message);
          this.open?.relationsWritten.add(relationId);
        }
        return;
      }
      case Tag.Insert:
      case Tag.Update:
      case Tag.Delete:
        if (this.skipping) return;
        this.change(message, [message.readUInt32BE(1)], tag === Tag.Insert ? 'insert' : tag === Tag.Update ? 'update' : 'delete');
        return;
      case Tag.Truncate: {
        if (this.skipping) return;
        const count = message.readUInt32BE(1);
        const ids: number[] = [];
        for (let i = 0; i < count; i++) ids.push(message.readUInt32BE(6 + 4 * i));
        this.change(message, ids, 'truncate');
        return;
      }
      case Tag.Message:
        // Only transactional messages are ours to keep; they sit inside a transaction.
        if (this.skipping || !this.inTransaction) return;
        this.write(message);
        this.logicalMessage(message);
        return;
      case Tag.Type:
        // Sent once per session for non-built-in types, so not deterministic per segment; values are
        // text and the Relation message carries each column's type OID, so nothing needs it.
        return;
      case Tag.Origin:
        if (!this.skipping && this.inTransaction) this.write(message);
        return;
      default:
        throw new PitrError('Internal', `unexpected pgoutput message tag 0x${(tag ?? 0).toString(16)}`);
    }
  }

  private segment(): OpenSegment {
    if (!this.open) {
      const file = path.join(this.spoolDir, `segment-${process.pid}-${Date.now()}-${this.counter++}-${randomBytes(4).toString('hex')}.lz4`);
      this.open = {
        builder: SegmentBuilder.create(file, this.chunkBytes),
        startedAt: Date.now(),
        relationsWritten: new Set(),
        stats: {
          firstCommitLsn: 0n,
          lastCommitLsn: 0n,
          endLsn: 0n,
          firstCommitTime: 0n,
          lastCommitTime: 0n,
          transactions: 0,
          changes: { insert: 0, update: 0, delete: 0, truncate: 0, message: 0 },
          tables: new Set(),
          marks: [],
          ddl: 0,
          unreplayable: [],
          replicaIdentityFull: [],
        },
      };
    }
    return this.open;
  }

  private write(message: Buffer): void {
    this.segment().builder.append(message);
  }

  private change(message: Buffer, relationIds: number[], kind: keyof ChangeCounts): void {
    const open = this.segment();
    for (const id of relationIds) {
      const relation = this.relations.get(id);
      if (!relation) throw new PitrError('Internal', `change for relation ${id} arrived before its relation message`);
      if (!open.relationsWritten.has(id)) {
        open.builder.append(relation.message);
        open.relationsWritten.add(id);
      }
      open.stats.tables.add(relation.name);
    }
    open.builder.append(message);
    open.stats.changes[kind]++;
  }

  private logicalMessage(message: Buffer): void {
    const stats = this.segment().stats;
    stats.changes.message++;
    const prefixEnd = message.indexOf(0, 10);
    const prefix = message.toString('utf8', 10, prefixEnd);
    if (prefix === MessagePrefix.Ddl) {
      stats.ddl++;
      const { problem, fixedTable } = inspect(message.subarray(prefixEnd + 5));
      if (problem) stats.unreplayable.push({ commitLsn: this.commitLsn, ...problem });
      if (fixedTable) stats.replicaIdentityFull.push(fixedTable);
    } else if (prefix === MessagePrefix.Mark) {
      const content = message.toString('utf8', prefixEnd + 5);
      try {
        stats.marks.push(String((JSON.parse(content) as { name: unknown }).name));
      } catch {
        // a malformed mark is still archived; it just is not listed
      }
    }
  }

  private committed(commitLsn: Lsn, endLsn: Lsn, commitTime: bigint): void {
    const stats = this.segment().stats;
    if (stats.transactions === 0) {
      stats.firstCommitLsn = commitLsn;
      stats.firstCommitTime = commitTime;
    }
    stats.transactions++;
    stats.lastCommitLsn = commitLsn;
    stats.endLsn = endLsn;
    stats.lastCommitTime = commitTime;
  }

  /** Closes the open segment (between transactions only); null when there is nothing to seal. */
  async seal(): Promise<SegmentContents | null> {
    const open = this.open;
    if (!open || this.inTransaction) return null;
    this.open = undefined;
    if (open.stats.transactions === 0) {
      await open.builder.discard();
      return null;
    }
    this.lastSealedCommitLsn = open.stats.lastCommitLsn;
    const spooled = await open.builder.finish();
    return { ...open.stats, tables: [...open.stats.tables].sort(), spooled };
  }

  /** After a lost connection: drop what is not sealed; the server sends it again from the slot. */
  async reset(): Promise<void> {
    const open = this.open;
    this.open = undefined;
    this.inTransaction = false;
    this.skipping = false;
    this.history = undefined;
    this.relations.clear();
    await open?.builder.discard();
  }
}

/** "schema.table" from a Relation message: tag, relid u32, namespace\0, name\0, ... */
function relationName(message: Buffer): string {
  const nsEnd = message.indexOf(0, 5);
  const nameEnd = message.indexOf(0, nsEnd + 1);
  return `${message.toString('utf8', 5, nsEnd)}.${message.toString('utf8', nsEnd + 1, nameEnd)}`;
}

/**
 * What the archiver says of a schema change record: why replay would refuse it, if it would (the
 * decision replay itself makes), and the table when it is the capture's own REPLICA IDENTITY FULL.
 */
function inspect(content: Buffer): { problem?: { tag: string; reason: string }; fixedTable?: string } {
  try {
    const record = parseDdlRecord(content);
    const action = ddlAction(record);
    const ours = record.tag === 'ALTER TABLE' && /\nPL\/pgSQL function pitr\.capture_ddl\(\) line \d+ at EXECUTE/.test(record.context ?? '');
    return {
      ...(action.kind === 'unreplayable' ? { problem: { tag: record.tag, reason: action.reason } } : {}),
      ...(ours && /REPLICA IDENTITY FULL"/.test(record.context ?? '') ? { fixedTable: record.commands[0]?.identity ?? '?' } : {}),
    };
  } catch (error) {
    return { problem: { tag: '?', reason: (error as Error).message } };
  }
}
