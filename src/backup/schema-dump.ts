import { execFile, spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { Lz4FileWriter, type WrittenFile } from '../archive/lz4-file-writer';
import { EVENT_TRIGGERS } from '../capture/ddl-capture-sql';
import { PITR_SCHEMA } from '../capture/in-band-sql';
import { PitrError } from '../errors';
import type { PgConnectConfig } from '../pg/pg-connect-config';
import type { PgTool } from './pg-tools';

const execFileAsync = promisify(execFile);

/**
 * libpq environment for a child program, so the password never appears on a command line (where
 * `ps` would show it). The settings are already resolved (service, environment, defaults): PGSERVICE
 * goes, or the child would read the service again over them.
 */
export function libpqEnv(config: PgConnectConfig): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (config.libpq) {
    delete env.PGSERVICE;
    Object.assign(env, config.libpq.env);
    if (typeof config.database === 'string') env.PGDATABASE = config.database;
    return env;
  }
  if (config.connectionString) {
    const url = new URL(config.connectionString);
    if (url.hostname) env.PGHOST = decodeURIComponent(url.hostname.replace(/^\[|\]$/g, ''));
    if (url.port) env.PGPORT = url.port;
    if (url.username) env.PGUSER = decodeURIComponent(url.username);
    if (url.password) env.PGPASSWORD = decodeURIComponent(url.password);
    const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
    if (database) env.PGDATABASE = database;
    for (const [key, value] of url.searchParams) {
      if (key === 'sslmode') env.PGSSLMODE = value;
      if (key === 'host') env.PGHOST = value;
    }
  }
  return env;
}

export interface SchemaFiles {
  dump: WrittenFile;
  preData: WrittenFile;
  postData: WrittenFile;
}

/**
 * The schema as of the exported snapshot: `pg_dump -Fc --section=pre-data --section=post-data --snapshot`,
 * without pitr's own schema, event trigger and publications, then split by pg_restore into pre-data (types,
 * tables, functions: before the data) and post-data (indexes, constraints, triggers, materialized view
 * refreshes: run once after it),
 * each kept as plain SQL so a person can read it. Files are written LZ4-compressed into `dir`.
 */
export async function dumpSchema(pgDump: PgTool, pgRestore: PgTool, config: PgConnectConfig, snapshotName: string, dir: string): Promise<SchemaFiles> {
  const env = libpqEnv(config);
  const dumpFile = path.join(dir, 'schema.dump');
  try {
    await execFileAsync(
      pgDump.path,
      [
        // not --schema-only, which leaves out the REFRESH of materialized views (their data is post-data):
        // restored, they would stay unpopulated. Large objects are not archived (see init), so not here either.
        '--section=pre-data',
        '--section=post-data',
        '--no-blobs',
        '--format=custom',
        `--snapshot=${snapshotName}`,
        `--exclude-schema=${PITR_SCHEMA}`,
        '--no-publications',
        '--no-subscriptions',
        '--file',
        dumpFile,
      ],
      { env, maxBuffer: 16 * 1024 * 1024 },
    );
    const listFile = await writeRestoreList(pgRestore, dumpFile, dir);
    const preData = await restoreSection(pgRestore, dumpFile, listFile, 'pre-data', path.join(dir, 'pre-data.sql.lz4'));
    const postData = await restoreSection(pgRestore, dumpFile, listFile, 'post-data', path.join(dir, 'post-data.sql.lz4'));
    const dump = await compressFile(dumpFile, path.join(dir, 'schema.dump.lz4'));
    return { dump, preData, postData };
  } catch (error) {
    if (error instanceof PitrError) throw error;
    const stderr =
      String((error as { stderr?: unknown }).stderr ?? (error as Error).message)
        .trim()
        .split('\n')[0] ?? '';
    throw new PitrError(
      'SourceConfig',
      `schema dump failed: ${stderr.replace(/password=\S+/g, 'password=****')}`,
      'check that the role may read every schema (pg_dump needs it), or run the backup as a superuser',
      { cause: error },
    );
  }
}

/**
 * The dump's table of contents without pitr's own event triggers (pg_dump cannot leave them out), for
 * `pg_restore --use-list`; `keep` chooses entries (comment lines are always kept). Returns the list file's path.
 */
export async function writeRestoreList(pgRestore: PgTool, dumpFile: string, dir: string, keep: (line: string) => boolean = () => true): Promise<string> {
  const { stdout: toc } = await execFileAsync(pgRestore.path, ['--list', dumpFile], { maxBuffer: 256 * 1024 * 1024 });
  const listFile = path.join(dir, 'schema.list');
  await fs.writeFile(
    listFile,
    toc
      .split('\n')
      .filter((line) => !EVENT_TRIGGERS.some((name) => line.includes(`EVENT TRIGGER - ${name} `)) && (line.startsWith(';') || keep(line)))
      .join('\n'),
  );
  return listFile;
}

function restoreSection(pgRestore: PgTool, dumpFile: string, listFile: string, section: string, target: string): Promise<WrittenFile> {
  return new Promise((resolve, reject) => {
    const child = spawn(pgRestore.path, ['--use-list', listFile, `--section=${section}`, '--file', '-', dumpFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    const writer = new Lz4FileWriter(target);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => writer.write(d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) {
        void writer.discard();
        reject(new PitrError('Internal', `pg_restore --section=${section} failed: ${stderr.trim().split('\n')[0] ?? ''}`));
      } else writer.finish().then(resolve, reject);
    });
  });
}

async function compressFile(source: string, target: string): Promise<WrittenFile> {
  const writer = new Lz4FileWriter(target);
  for await (const chunk of createReadStream(source)) writer.write(chunk as Buffer);
  return writer.finish();
}
