import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import type { Client, ClientConfig } from 'pg';
import PQueue from 'p-queue';
import { from as copyFrom } from 'pg-copy-streams';
import { decodeCheckedJson } from '../archive/checked-json';
import { checkedBytes } from '../archive/checked-stream';
import { decompressBrotli } from '../archive/brotli-stream';
import { decompressFrames } from '../archive/lz4-frames';
import type { Repository } from '../archive/repository';
import { backupPrefix, MANIFEST_FILE, type BackupManifest, type BackupTable, type StoredPart } from '../archive/backup-manifest';
import type { PgTool } from '../backup/pg-tools';
import { libpqEnv, writeRestoreList } from '../backup/schema-dump';
import { qualifiedName, quoteIdent, quoteLiteral } from '../pg/sql-quote';
import { PitrError } from '../errors';
import { splitStatements } from '../pg/sql-lexer';
import { withTransaction } from '../pg/with-client';

const execFileAsync = promisify(execFile);

export async function readBackupManifest(repo: Repository, id: string): Promise<BackupManifest> {
  const name = `${backupPrefix(id)}${MANIFEST_FILE}`;
  return decodeCheckedJson<BackupManifest>(await repo.storage.read(name), name);
}

/** Decompressed bytes of a stored part (by its codec), its SHA-256 checked as the stream ends (before it completes). */
export async function* partBytes(repo: Repository, manifest: BackupManifest, part: StoredPart): AsyncGenerator<Buffer> {
  const name = `${backupPrefix(manifest.id)}${part.name}`;
  const stored = checkedBytes(
    repo.storage.readStream(name),
    part.sha256,
    (actual) =>
      new PitrError('Integrity', `backup object ${name} is corrupt: sha256 ${actual} does not match the manifest`, 'run "pitr verify"; use another backup'),
  );
  const codec = part.codec ?? 'lz4';
  switch (codec) {
    case 'lz4':
      yield* decompressFrames(stored, `backup object ${name}`);
      return;
    case 'brotli':
      yield* decompressBrotli(stored, `backup object ${name}`);
      return;
    default: {
      const never: never = codec;
      throw new PitrError('Integrity', `backup object ${name} has an unknown codec "${String(never)}"`, 'restore it with a newer pitr');
    }
  }
}

/** The TOC line of a foreign key constraint in `pg_restore --list` output. */
const isForeignKey = (line: string): boolean => / FK CONSTRAINT /.test(line);

/** Writes the backup's pg_dump archive to a scratch directory for pg_restore, and removes it after `fn`. */
async function withSchemaDump<T>(repo: Repository, manifest: BackupManifest, fn: (dumpFile: string, dir: string) => Promise<T>): Promise<T> {
  const dir = await fs.mkdtemp(path.join(tmpdir(), 'pitr-schema-'));
  try {
    const dumpFile = path.join(dir, 'schema.dump');
    const handle = await fs.open(dumpFile, 'w');
    for await (const bytes of partBytes(repo, manifest, manifest.schema.dump)) await handle.write(bytes);
    await handle.close();
    return await fn(dumpFile, dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/**
 * Runs one schema section from the backup's pg_dump archive with pg_restore (pitr's own trigger left
 * out). `withoutForeignKeys` leaves foreign keys out too (with `--tables`, a restored table may point at
 * one that is not restored) and returns them, one `ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY`
 * statement each, read from the same copy of the dump; otherwise it returns none. `jobs` above 1 runs
 * that many pg_restore sessions (indexes and constraints built side by side, as `pg_restore -j`).
 */
export async function restoreSchemaSection(
  repo: Repository,
  manifest: BackupManifest,
  pgRestore: PgTool,
  target: ClientConfig,
  section: 'pre-data' | 'post-data',
  options: { withoutForeignKeys?: boolean; jobs?: number } = {},
): Promise<string[]> {
  return withSchemaDump(repo, manifest, async (dumpFile, dir) => {
    const listFile = await writeRestoreList(pgRestore, dumpFile, dir, options.withoutForeignKeys ? (line) => !isForeignKey(line) : undefined);
    const env = libpqEnv(target);
    await execFileAsync(
      pgRestore.path,
      [
        '--exit-on-error',
        '--no-owner',
        `--section=${section}`,
        ...((options.jobs ?? 1) > 1 ? ['--jobs', String(options.jobs)] : []),
        '--use-list',
        listFile,
        '--dbname',
        env.PGDATABASE ?? env.PGUSER ?? '',
        dumpFile,
      ],
      {
        env,
        maxBuffer: 64 * 1024 * 1024,
      },
    ).catch((error: unknown) => {
      const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
      throw new PitrError(
        'Internal',
        `restoring the ${section} schema failed: ${stderr.split('\n').find((l) => l.includes('error')) ?? stderr.split('\n')[0]}`,
      );
    });
    return options.withoutForeignKeys ? foreignKeyStatements(pgRestore, dumpFile, dir) : [];
  });
}

/** The dump's foreign key constraints, one `ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY` statement each. */
async function foreignKeyStatements(pgRestore: PgTool, dumpFile: string, dir: string): Promise<string[]> {
  const listFile = await writeRestoreList(pgRestore, dumpFile, dir, isForeignKey);
  const { stdout } = await execFileAsync(pgRestore.path, ['--use-list', listFile, '--section=post-data', '--file', '-', dumpFile], {
    maxBuffer: 64 * 1024 * 1024,
  });
  return splitStatements(stdout)
    .map((statement) => statement.text)
    .filter((statement) => /^ALTER TABLE\b/i.test(statement));
}

/** The `TABLE schema name owner` lines of the backup's schema dump (its table of contents): partitioned parents too. */
export async function backupTableEntries(repo: Repository, manifest: BackupManifest, pgRestore: PgTool): Promise<string[]> {
  return withSchemaDump(repo, manifest, async (dumpFile) => {
    const { stdout } = await execFileAsync(pgRestore.path, ['--list', dumpFile], { maxBuffer: 256 * 1024 * 1024 });
    return stdout.split('\n').filter((line) => / TABLE /.test(line) && !line.startsWith(';'));
  });
}

/** COPY one chunk of a table into the target in its own transaction (nothing of a corrupt chunk lands); returns its rows. */
export async function loadChunk(repo: Repository, manifest: BackupManifest, client: Client, table: BackupTable, chunk: StoredPart): Promise<number> {
  const columns = table.columns.map(quoteIdent).join(', ');
  return withTransaction(client, async () => {
    const stream = client.query(copyFrom(`COPY ${qualifiedName(table.schema, table.name)} (${columns}) FROM STDIN`));
    await pipeline(Readable.from(partBytes(repo, manifest, chunk)), stream);
    return Number(stream.rowCount ?? 0);
  });
}

/** What loadTables reports and asks as it goes. */
export interface LoadHooks {
  /** Called before each chunk starts; throwing stops the load (e.g. when interrupted). */
  beforeChunk?: () => void;
  /** A chunk is in; `tableDone` when it was its table's last. */
  chunkLoaded?: (table: BackupTable, chunk: StoredPart, tableDone: boolean) => void;
}

/**
 * Loads the chunks of `tables` over `sessions`, one chunk per session at a time in the backup's order
 * (largest tables first), so the chunks of one big table load side by side, as they were copied.
 * The first failure stops the chunks not started yet and is thrown once those in flight are done.
 */
export async function loadTables(
  repo: Repository,
  manifest: BackupManifest,
  sessions: readonly Client[],
  tables: readonly BackupTable[],
  hooks: LoadHooks = {},
): Promise<void> {
  const idle = [...sessions];
  const queue = new PQueue({ concurrency: sessions.length });
  let failure: unknown;
  for (const table of tables) {
    let left = table.chunks.length;
    for (const chunk of table.chunks) {
      queue
        .add(async () => {
          hooks.beforeChunk?.();
          const session = idle.pop() as Client;
          try {
            await loadChunk(repo, manifest, session, table, chunk);
          } finally {
            idle.push(session);
          }
          left--;
          hooks.chunkLoaded?.(table, chunk, left === 0);
        })
        .catch((error: unknown) => {
          failure ??= error;
          queue.clear();
        });
    }
  }
  await queue.onIdle();
  if (failure) throw failure;
}

/** Sets each sequence as recorded (never-used ones back to their start, is_called false). */
export async function restoreSequences(client: Client, sequences: BackupManifest['sequences']): Promise<void> {
  for (const seq of sequences) {
    const name = quoteLiteral(qualifiedName(seq.schema, seq.name));
    if (seq.lastValue === null) await client.query(`SELECT setval(${name}, (SELECT seqstart FROM pg_sequence WHERE seqrelid = ${name}::regclass), false)`);
    else await client.query(`SELECT setval(${name}, ${BigInt(seq.lastValue).toString()}, true)`);
  }
}
