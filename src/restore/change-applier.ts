import type { Client } from 'pg';
import { MessagePrefix } from '../archive/segment-format';
import type { PgoutputMessage, RelationMessage, TupleData, TupleValue } from '../capture/pgoutput-decoder';
import { qualifiedName, quoteIdent } from '../capture/sql-quote';
import { PitrError } from '../errors';
import { capturedStatement } from './sql-statements';
import { TargetColumns, type TargetColumn } from './target-columns';

type Text = string | null;

/** A run of same-shaped changes to one table, applied as one statement. */
interface Batch {
  kind: 'insert' | 'update' | 'delete';
  relationId: number;
  shape: string;
  /** Column names bound, in parameter order (keys first for update/delete). */
  keyColumns: string[];
  setColumns: string[];
  /** One array of text values per bound column. */
  columns: Text[][];
  keys: Set<string>;
  bytes: number;
}

const MAX_ROWS = 2000;
const MAX_BYTES = 8 * 1024 * 1024;

/** A key's values as one string for the batch's set of touched keys (NUL-separated; \u0001 = NULL). */
const keyText = (values: Text[]): string => (values.length === 1 ? (values[0] ?? '\u0001') : values.map((v) => v ?? '\u0001').join('\u0000'));

const textOf = (value: TupleValue | undefined): Text =>
  value?.kind === 'text' ? value.value : value?.kind === 'binary' ? `\\x${value.value.toString('hex')}` : null;

/**
 * Applies decoded pgoutput changes to the target, exactly: values travel as the archived text, cast
 * by the target's column types; unchanged TOAST values are left alone; identity columns are written
 * as archived (OVERRIDING SYSTEM VALUE). Runs of inserts, updates of the same shape and deletes
 * become single statements over unnest() arrays; tables without a key (REPLICA IDENTITY FULL) are
 * changed one row at a time, touching exactly one of identical rows. The caller owns transactions.
 */
export class ChangeApplier {
  private readonly relations = new Map<number, RelationMessage>();
  private readonly targetColumns: TargetColumns;
  private batch: Batch | undefined;
  /** Statements sent and not yet answered: decoding goes on while the server applies them. */
  private outstanding: Promise<unknown>[] = [];
  private failure: unknown;
  changes = 0;
  /** The latest sequence values carried by a heartbeat. */
  sequences: [string, string, string | null][] | undefined;

  constructor(
    private readonly client: Client,
    private readonly tables?: Set<string>,
  ) {
    this.targetColumns = new TargetColumns(client);
  }

  private wanted(relation: RelationMessage): boolean {
    return !this.tables || this.tables.has(`${relation.namespace}.${relation.name}`);
  }

  private relation(id: number): RelationMessage {
    const relation = this.relations.get(id);
    if (!relation) throw new PitrError('Integrity', `change for relation ${id} without its relation message`);
    return relation;
  }

  async apply(message: PgoutputMessage): Promise<void> {
    switch (message.tag) {
      case 'R':
        await this.flush();
        this.relations.set(message.relationId, message);
        return;
      case 'I': {
        const relation = this.relation(message.relationId);
        if (!this.wanted(relation)) return;
        const names = relation.columns.map((c) => c.name);
        await this.add('insert', relation, [], names, [], message.newTuple.map(textOf));
        this.changes++;
        return;
      }
      case 'U': {
        const relation = this.relation(message.relationId);
        if (!this.wanted(relation)) return;
        this.changes++;
        const keyIndexes = relation.columns.map((c, i) => ((c.flags & 1) === 1 ? i : -1)).filter((i) => i >= 0);
        const old = message.oldTuple?.values ?? message.newTuple;
        const target = this.targetColumns.peek(relation.namespace, relation.name) ?? (await this.columnsOf(relation));
        // Assign what changed: not unchanged TOAST values, not key columns that kept their value, never
        // GENERATED ALWAYS columns (an UPDATE cannot assign them; they cannot change on the source either).
        const setIndexes = message.newTuple
          .map((v, i) => {
            const column = relation.columns[i];
            if (v.kind === 'unchanged' || !column || target.get(column.name)?.neverUpdated) return -1;
            if ((column.flags & 1) === 1 && message.oldTuple && textOf(message.oldTuple.values[i]) === textOf(v)) return -1;
            if ((column.flags & 1) === 1 && !message.oldTuple) return -1;
            return i;
          })
          .filter((i) => i >= 0);
        if (relation.replicaIdentity === 'f' || keyIndexes.length === 0) {
          await this.drain();
          await this.singleRow('update', relation, old, message.newTuple, setIndexes);
          return;
        }
        await this.add(
          'update',
          relation,
          keyIndexes.map((i) => relation.columns[i]?.name as string),
          setIndexes.map((i) => relation.columns[i]?.name as string),
          keyIndexes.map((i) => textOf(old[i])),
          setIndexes.map((i) => textOf(message.newTuple[i])),
          keyIndexes.map((i) => (message.newTuple[i]?.kind === 'unchanged' ? textOf(old[i]) : textOf(message.newTuple[i]))),
        );
        return;
      }
      case 'D': {
        const relation = this.relation(message.relationId);
        if (!this.wanted(relation)) return;
        this.changes++;
        const keyIndexes = relation.columns.map((c, i) => ((c.flags & 1) === 1 ? i : -1)).filter((i) => i >= 0);
        if (relation.replicaIdentity === 'f' || keyIndexes.length === 0) {
          await this.drain();
          await this.singleRow('delete', relation, message.oldTuple.values, [], []);
          return;
        }
        await this.add(
          'delete',
          relation,
          keyIndexes.map((i) => relation.columns[i]?.name as string),
          [],
          keyIndexes.map((i) => textOf(message.oldTuple.values[i])),
          [],
        );
        return;
      }
      case 'T': {
        await this.drain();
        const names = message.relationIds.map((id) => this.relation(id)).filter((r) => this.wanted(r));
        if (names.length === 0) return;
        this.changes++;
        await this.client.query(
          `TRUNCATE ONLY ${names.map((r) => qualifiedName(r.namespace, r.name)).join(', ')}${message.restartIdentity ? ' RESTART IDENTITY' : ''}${message.cascade ? ' CASCADE' : ''}`,
        );
        return;
      }
      case 'M':
        await this.drain();
        await this.logicalMessage(message.prefix, message.content);
        return;
      case 'B':
      case 'C':
      case 'O':
      case 'Y':
        return;
      default: {
        const never: never = message;
        throw new Error(`unknown message ${String(never)}`);
      }
    }
  }

  private async logicalMessage(prefix: string, content: Buffer): Promise<void> {
    if (prefix === MessagePrefix.Ddl) {
      const ddl = JSON.parse(content.toString('utf8')) as { query: string; index?: number; search_path: string };
      const statement = capturedStatement(ddl.query, ddl.index ?? 0);
      await this.client.query("SELECT set_config('search_path', $1, true)", [ddl.search_path]);
      // With --tables, DDL on a table not restored fails: skip it, inside a savepoint.
      if (this.tables) await this.client.query('SAVEPOINT pitr_ddl');
      try {
        await this.client.query(statement);
        if (this.tables) await this.client.query('RELEASE SAVEPOINT pitr_ddl');
      } catch (error) {
        if (this.tables && (error as { code?: string }).code === '42P01') {
          await this.client.query('ROLLBACK TO SAVEPOINT pitr_ddl');
          return;
        }
        throw new PitrError('Internal', `replaying DDL failed: ${(error as Error).message}: ${statement.slice(0, 200)}`, undefined, { cause: error });
      }
      await this.client.query("SELECT set_config('search_path', 'pg_catalog, public', true)");
      this.targetColumns.clear();
      this.changes++;
    } else if (prefix === MessagePrefix.Heartbeat) {
      this.sequences = (JSON.parse(content.toString('utf8')) as { sequences: [string, string, string | null][] }).sequences;
    }
  }

  /**
   * Adds one row to the pending batch. A row whose key was already touched in the batch (as an old or
   * a new key) starts a new batch: one statement sees the table as it was before it.
   */
  private async add(
    kind: Batch['kind'],
    relation: RelationMessage,
    keyColumns: string[],
    setColumns: string[],
    keyValues: Text[],
    setValues: Text[],
    newKeyValues?: Text[],
  ): Promise<void> {
    const shape = `${kind}|${relation.relationId}|${keyColumns.join(',')}|${setColumns.join(',')}`;
    const rowKeys = kind === 'insert' ? [] : newKeyValues ? [keyText(keyValues), keyText(newKeyValues)] : [keyText(keyValues)];
    let batch = this.batch;
    if (
      batch &&
      (batch.shape !== shape || (batch.columns[0]?.length ?? 0) >= MAX_ROWS || batch.bytes >= MAX_BYTES || rowKeys.some((k) => batch?.keys.has(k)))
    ) {
      await this.flush();
      batch = undefined;
    }
    if (!batch) {
      batch = {
        kind,
        relationId: relation.relationId,
        shape,
        keyColumns,
        setColumns,
        columns: [...keyColumns, ...setColumns].map(() => []),
        keys: new Set(),
        bytes: 0,
      };
      this.batch = batch;
    }
    const values = [...keyValues, ...setValues];
    values.forEach((v, i) => {
      batch.columns[i]?.push(v);
      batch.bytes += v?.length ?? 0;
    });
    for (const k of rowKeys) batch.keys.add(k);
  }

  /** Applies the pending batch. */
  async flush(): Promise<void> {
    const batch = this.batch;
    if (!batch) return;
    this.batch = undefined;
    const relation = this.relation(batch.relationId);
    const table = qualifiedName(relation.namespace, relation.name);
    const target = this.targetColumns.peek(relation.namespace, relation.name) ?? (await this.columnsOf(relation));
    const type = (name: string): TargetColumn => {
      const column = target.get(name);
      if (!column) throw new PitrError('Internal', `column ${name} of ${table} is missing in the target`);
      return column;
    };
    const bound = [...batch.keyColumns, ...batch.setColumns];
    const aliases = bound.map((_, i) => `c${i}`);
    const source = `unnest(${bound.map((_, i) => `$${i + 1}::text[]`).join(', ')}) AS v(${aliases.join(', ')})`;
    const cast = (name: string, i: number): string => `v.c${i}::${type(name).type}`;
    const match = (name: string, i: number): string =>
      type(name).hasEquality ? `t.${quoteIdent(name)} = ${cast(name, i)}` : `t.${quoteIdent(name)}::text = v.c${i}`;
    let sql: string;
    if (batch.kind === 'insert') {
      sql = `INSERT INTO ${table} (${bound.map(quoteIdent).join(', ')}) OVERRIDING SYSTEM VALUE SELECT ${bound.map(cast).join(', ')} FROM ${source}`;
    } else if (batch.kind === 'delete') {
      sql = `DELETE FROM ${table} AS t USING ${source} WHERE ${batch.keyColumns.map(match).join(' AND ')}`;
    } else {
      const offset = batch.keyColumns.length;
      const sets = batch.setColumns.map((name, j) => `${quoteIdent(name)} = ${cast(name, offset + j)}`);
      if (sets.length === 0) return;
      sql = `UPDATE ${table} AS t SET ${sets.join(', ')} FROM ${source} WHERE ${batch.keyColumns.map(match).join(' AND ')}`;
    }
    await this.send(sql, batch.columns);
  }

  /**
   * Sends a statement without waiting for its answer (the connection runs them in order), so the
   * next batch is decoded while the server applies this one. At most a few are in flight.
   */
  private async send(sql: string, params: unknown[]): Promise<void> {
    await this.settle();
    const pending = this.client.query(sql, params);
    pending.catch((error: unknown) => (this.failure ??= error));
    this.outstanding.push(pending);
  }

  /** Waits for the statement in flight (one at a time: the connection does not queue). */
  private async settle(): Promise<void> {
    const pending = this.outstanding;
    this.outstanding = [];
    await Promise.allSettled(pending);
    if (this.failure) {
      const failure = this.failure;
      this.failure = undefined;
      throw failure;
    }
  }

  /** Waits for every statement sent; throws the first failure. Call before committing. */
  async drain(): Promise<void> {
    await this.flush();
    await this.settle();
  }

  /** Column facts from the target's catalog, once no statement is in flight. */
  private async columnsOf(relation: RelationMessage): Promise<Map<string, TargetColumn>> {
    await this.settle();
    return this.targetColumns.get(relation.namespace, relation.name);
  }

  /** One row of a table without a usable key: exactly one of possibly identical rows, by ctid. */
  private async singleRow(kind: 'update' | 'delete', relation: RelationMessage, old: TupleData, next: TupleData, setIndexes: number[]): Promise<void> {
    const table = qualifiedName(relation.namespace, relation.name);
    const target = await this.columnsOf(relation);
    const params: Text[] = [];
    const conditions = relation.columns.map((column, i) => {
      const value = textOf(old[i]);
      const info = target.get(column.name);
      if (old[i]?.kind === 'unchanged') return 'true';
      params.push(value);
      const p = `$${params.length}`;
      return info?.hasEquality
        ? `${quoteIdent(column.name)} IS NOT DISTINCT FROM ${p}::${info.type}`
        : `${quoteIdent(column.name)}::text IS NOT DISTINCT FROM ${p}`;
    });
    const locate = `ctid = (SELECT ctid FROM ${table} WHERE ${conditions.join(' AND ')} LIMIT 1)`;
    if (kind === 'delete') {
      await this.client.query(`DELETE FROM ${table} WHERE ${locate}`, params);
      return;
    }
    const sets = setIndexes.map((i) => {
      const column = relation.columns[i] as RelationMessage['columns'][number];
      params.push(textOf(next[i]));
      return `${quoteIdent(column.name)} = $${params.length}::${target.get(column.name)?.type ?? 'text'}`;
    });
    if (sets.length > 0) await this.client.query(`UPDATE ${table} SET ${sets.join(', ')} WHERE ${locate}`, params);
  }
}
