/**
 * Every option is declared here once: its type, default, environment variable, the commands it applies
 * to and whether it is secret. Parsing, validation, `--help` and the README's reference come from this.
 */
export type OptionType = 'string' | 'url' | 'duration' | 'bytes' | 'integer' | 'boolean';

export interface OptionSpec {
  name: string;
  type: OptionType;
  description: string;
  commands: readonly string[];
  env?: string;
  default?: string;
  /** Placeholder in help text, e.g. URL. */
  arg?: string;
  /** Values that must never be printed (only the redacted form is). */
  secret?: boolean;
  min?: number;
  /**
   * May be given more than once (each flag adds a value); its environment variable holds the values
   * separated by commas. `ParsedOptions.strings` reads them all, `string` the first.
   */
  repeatable?: boolean;
}

const ALL = ['init', 'archive', 'status', 'backup', 'restore', 'mark', 'list', 'verify', 'prune', 'compact', 'log', 'undo', 'drill'] as const;
const SOURCE_COMMANDS = ['init', 'archive', 'status', 'backup', 'mark', 'undo', 'drill'] as const;

/** The declarations with their literal types kept, so each option's value type follows from them. */
const DECLARED = [
  {
    name: 'source',
    type: 'url',
    arg: 'URL',
    env: 'PITR_SOURCE',
    commands: SOURCE_COMMANDS,
    secret: true,
    description:
      'the database to archive, as psql takes it: a URL (postgresql://user@host:port/db?sslmode=require) or keyword/value pairs (host=db1 port=5432 dbname=shop user=pitr, or service=NAME); what it leaves out comes from the service (PGSERVICE), then the PG* variables, then the defaults (see Connections)',
  },
  {
    name: 'repo',
    type: 'string',
    arg: 'REPO',
    env: 'PITR_REPO',
    default: './pitr-repo',
    commands: ALL,
    repeatable: true,
    description:
      'repository: a directory path, file:///path, or gs://bucket/prefix; repeat it (or separate them by commas in PITR_REPO) for several, each with its own settings after "?" (see Several repositories)',
  },
  {
    name: 'gcs-endpoint',
    type: 'string',
    arg: 'URL',
    env: 'PITR_GCS_ENDPOINT',
    commands: [...ALL, 'copy'],
    description: 'Google Cloud Storage API endpoint (an emulator); STORAGE_EMULATOR_HOST is honoured too',
  },
  {
    name: 'encryption-key-file',
    type: 'string',
    arg: 'PATH',
    env: 'PITR_ENCRYPTION_KEY_FILE',
    commands: [...ALL, 'copy'],
    description:
      'file of encryption keys, one per line as KEYID:KEY (32 bytes as 64 hex digits or base64); the first seals new objects, all open what they sealed. Or the keys in PITR_ENCRYPTION_KEY (environment only, never a flag). With a key a new repository is encrypted (see Encryption at rest)',
  },
  {
    name: 'slot',
    type: 'string',
    arg: 'NAME',
    env: 'PITR_SLOT',
    default: 'pitr',
    commands: ['init', 'archive', 'status', 'drill'],
    description: 'name of the logical replication slot',
  },
  {
    name: 'publication',
    type: 'string',
    arg: 'NAME',
    env: 'PITR_PUBLICATION',
    default: 'pitr',
    commands: ['init', 'archive'],
    description: 'name of the publication (FOR ALL TABLES)',
  },
  {
    name: 'segment-size',
    type: 'bytes',
    arg: 'SIZE',
    env: 'PITR_SEGMENT_SIZE',
    default: '16MB',
    commands: ['archive'],
    min: 4096,
    description: 'seal a segment once it holds this many uncompressed bytes (a larger single transaction makes a larger segment)',
  },
  {
    name: 'segment-age',
    type: 'duration',
    arg: 'DURATION',
    env: 'PITR_SEGMENT_AGE',
    default: '1s',
    commands: ['archive'],
    description: 'seal a segment at the latest this long after its first transaction arrived (bounds the RPO)',
  },
  {
    name: 'heartbeat',
    type: 'duration',
    arg: 'DURATION',
    env: 'PITR_HEARTBEAT',
    default: '10s',
    commands: ['archive'],
    description: 'interval of the in-stream heartbeat and sequence snapshot',
  },
  {
    name: 'upload-concurrency',
    type: 'integer',
    arg: 'N',
    env: 'PITR_UPLOAD_CONCURRENCY',
    default: '2',
    min: 1,
    commands: ['archive'],
    description: 'segments uploaded at once',
  },
  {
    name: 'spool-dir',
    type: 'string',
    arg: 'DIR',
    env: 'PITR_SPOOL_DIR',
    commands: ['archive', 'backup'],
    description: 'local directory for segments and backup chunks being built (default: the system temp dir)',
  },
  {
    name: 'log-level',
    type: 'string',
    arg: 'LEVEL',
    env: 'PITR_LOG_LEVEL',
    default: 'info',
    commands: [...ALL, 'copy'],
    description: 'log level: fatal, error, warn, info, debug, trace',
  },
  {
    name: 'jobs',
    type: 'integer',
    arg: 'N',
    env: 'PITR_JOBS',
    default: '2',
    min: 1,
    commands: ['backup', 'archive', 'restore'],
    description: 'connections working at once: chunks copied (backup); chunks loaded, indexes built and tables applied (restore)',
  },
  {
    name: 'chunk-size',
    type: 'bytes',
    arg: 'SIZE',
    env: 'PITR_CHUNK_SIZE',
    default: '256MB',
    min: 8192,
    commands: ['backup', 'archive'],
    description: 'split tables larger than this into chunks of about this size (by table pages; for backup, a multiple of --jobs of them)',
  },
  {
    name: 'pg-dump',
    type: 'string',
    arg: 'PATH',
    env: 'PITR_PG_DUMP',
    commands: ['backup', 'archive', 'restore'],
    description: 'pg_dump to use for the schema (default: found on PATH, through pg_config, or in /usr/lib/postgresql)',
  },
  {
    name: 'backup-every',
    type: 'duration',
    arg: 'DURATION',
    env: 'PITR_BACKUP_EVERY',
    commands: ['archive'],
    description: 'also take a base backup this often while archiving (e.g. 24h); off when unset',
  },
  {
    name: 'listen',
    type: 'string',
    arg: 'HOST:PORT',
    env: 'PITR_LISTEN',
    commands: ['archive'],
    description:
      'serve /metrics (Prometheus), /healthz and /status over HTTP, usually on 127.0.0.1:9187; a bare port binds to 127.0.0.1 only, other interfaces only when named (0.0.0.0:9187); off when unset',
  },
  {
    name: 'apply-fixes',
    type: 'boolean',
    commands: ['init'],
    description: 'apply the fixes of failed checks that take effect at once (the replica identity of tables without a primary key), then check again',
  },
  {
    name: 'target',
    type: 'url',
    arg: 'URL',
    secret: true,
    commands: ['restore', 'drill'],
    description: 'database to restore into (created when missing): a URL or keyword/value pairs, like --source',
  },
  { name: 'to', type: 'string', arg: 'TARGET', commands: ['restore', 'drill'], description: 'restore point: a timestamp, latest, lsn:X/Y, xid:N or mark:NAME' },
  { name: 'exclusive', type: 'boolean', commands: ['restore'], description: 'stop just before the target instead of just after it' },
  { name: 'tables', type: 'string', arg: 'LIST', commands: ['restore'], description: 'restore only these tables (comma-separated, schema.table or table)' },
  { name: 'dry-run', type: 'boolean', commands: ['restore', 'prune', 'compact'], description: 'print the plan, change nothing' },
  {
    name: 'older-than',
    type: 'duration',
    arg: 'DURATION',
    default: '1h',
    commands: ['compact'],
    description: 'merge only segments whose every commit is older than this',
  },
  {
    name: 'compact-size',
    type: 'bytes',
    arg: 'SIZE',
    default: '64MB',
    commands: ['compact'],
    description: 'largest compacted segment (uncompressed bytes)',
  },
  { name: 'rebuild-index', type: 'boolean', commands: ['compact'], description: "build the archive's index anew from the segment manifests first" },
  { name: 'force', type: 'boolean', commands: ['restore'], description: 'replace a non-empty target database (or the source itself)' },
  { name: 'from', type: 'string', arg: 'REPO', commands: ['copy'], description: 'the repository to copy (a location as --repo takes it)' },
  { name: 'into', type: 'string', arg: 'REPO', commands: ['copy'], description: 'the repository to copy into: empty, or a copy of the same repository' },
  {
    name: 'transfers',
    type: 'integer',
    arg: 'N',
    env: 'PITR_TRANSFERS',
    default: '4',
    min: 1,
    commands: ['copy'],
    description: 'objects read and stored at once',
  },
  {
    name: 'repair',
    type: 'boolean',
    commands: ['verify'],
    description: 'restore each object missing or corrupt in one repository from a good copy in another (--repo repeated); a corrupt one is replaced',
  },
  { name: 'deep', type: 'boolean', commands: ['verify'], description: 'also decompress and decode every record of every segment' },
  {
    name: 'ddl',
    type: 'boolean',
    commands: ['verify'],
    description: 'also read the segments holding schema changes and report those a restore could not replay (exit 11 when they are all it finds)',
  },
  { name: 'table', type: 'string', arg: 'TABLE', commands: ['log'], description: 'only transactions touching this table (schema.table or table)' },
  { name: 'op', type: 'string', arg: 'OP', commands: ['log'], description: 'only transactions with this operation: insert, update, delete, truncate or ddl' },
  {
    name: 'since',
    type: 'string',
    arg: 'TIME',
    commands: ['log', 'verify'],
    description:
      'log: only transactions committed at or after this time; verify: only the segments with commits at or after it, and the backups a restore to it or later needs (the newest that ended by then and every newer one)',
  },
  { name: 'until', type: 'string', arg: 'TIME', commands: ['log'], description: 'only transactions committed at or before this time' },
  { name: 'xid', type: 'string', arg: 'N', commands: ['log', 'undo'], description: 'the transaction with this id' },
  { name: 'rows', type: 'boolean', commands: ['log'], description: 'also print the row images' },
  { name: 'output', type: 'string', arg: 'FILE', commands: ['undo'], description: 'write the SQL to this file instead of stdout' },
  {
    name: 'retention',
    type: 'duration',
    arg: 'DURATION',
    env: 'PITR_RETENTION',
    commands: ['prune', 'archive'],
    description:
      'keep what is needed to restore to any point this far back (e.g. 7d); archive: also prune at start and then hourly (4 times per window when shorter)',
  },
  {
    name: 'lease-ttl',
    type: 'duration',
    arg: 'DURATION',
    env: 'PITR_LEASE_TTL',
    default: '30s',
    min: 1000,
    commands: ['archive'],
    description:
      "the repository's writer lease expires when not renewed for this long (by the storage's clock; renewed every third of it): after a crash elsewhere, another archiver may take over then",
  },
  {
    name: 'takeover',
    type: 'boolean',
    commands: ['init', 'archive'],
    description:
      'take the repository over from the archiver that holds its writer lease, without waiting for the lease to expire (only when that archiver is gone for good)',
  },
  {
    name: 'max-lag',
    type: 'duration',
    arg: 'DURATION',
    default: '60s',
    commands: ['status', 'archive'],
    description: 'degraded when the newest archived commit is older than this (the RPO)',
  },
  {
    name: 'critical-lag',
    type: 'duration',
    arg: 'DURATION',
    commands: ['status', 'archive'],
    description: 'broken when the newest archived commit is older than this (e.g. 1h); never when unset',
  },
  {
    name: 'max-slot-lag',
    type: 'bytes',
    arg: 'SIZE',
    default: '1GB',
    commands: ['status', 'archive'],
    description: "degraded when the slot's confirmed position is this much WAL behind the source",
  },
  {
    name: 'critical-slot-lag',
    type: 'bytes',
    arg: 'SIZE',
    commands: ['status', 'archive'],
    description: "broken when the slot's confirmed position is this much WAL behind the source (e.g. 10GB); never when unset",
  },
  {
    name: 'max-backup-age',
    type: 'duration',
    arg: 'DURATION',
    default: '48h',
    commands: ['status', 'archive'],
    description: 'degraded when the newest base backup ended longer ago than this',
  },
  {
    name: 'critical-backup-age',
    type: 'duration',
    arg: 'DURATION',
    commands: ['status', 'archive'],
    description: 'broken when the newest base backup ended longer ago than this (e.g. 7d); never when unset',
  },
  {
    name: 'critical-stopped',
    type: 'duration',
    arg: 'DURATION',
    commands: ['status', 'archive'],
    description:
      'broken when the archiver has been stopped (its slot inactive) for longer than this, counted from the newest archived commit (e.g. 1d); degraded at once otherwise; never broken when unset',
  },
  { name: 'keep', type: 'boolean', commands: ['drill', 'demo'], description: 'keep the scratch database (drill) or the throwaway cluster (demo) afterwards' },
  {
    name: 'pg-bin',
    type: 'string',
    arg: 'DIRS',
    env: 'PITR_PG_BIN',
    commands: ['demo'],
    description: 'directories (colon-separated) holding initdb, pg_ctl and postgres (default: PATH, pg_config --bindir, /usr/lib/postgresql/N/bin, Homebrew)',
  },
  { name: 'json', type: 'boolean', commands: [...ALL, 'copy'], description: 'machine-readable output on stdout' },
  { name: 'help', type: 'boolean', commands: [...ALL, 'copy', 'demo', 'completion'], description: 'show help for the command' },
] as const satisfies readonly OptionSpec[];

export const OPTIONS: readonly OptionSpec[] = DECLARED;

type Declared = (typeof DECLARED)[number];
export type OptionName = Declared['name'];
type Declaration<N extends OptionName> = Extract<Declared, { name: N }>;
/** Names of the options whose declared type is one of T. */
export type OptionNameOfType<T extends OptionType> = Extract<Declared, { type: T }>['name'];
export type StringOptionName = OptionNameOfType<'string' | 'url'>;
/** Durations are read as milliseconds, sizes as bytes. */
export type NumberOptionName = OptionNameOfType<'integer' | 'duration' | 'bytes'>;
export type FlagOptionName = OptionNameOfType<'boolean'>;

type ValueOfType<T extends OptionType> = T extends 'boolean' ? boolean : T extends 'integer' | 'duration' | 'bytes' ? number : string;
/** The value an option reads as: a flag is always a boolean, an option with a default is always set. */
export type OptionValueOf<N extends OptionName> =
  Declaration<N> extends { type: 'boolean' }
    ? boolean
    : Declaration<N> extends { default: string }
      ? ValueOfType<Declaration<N>['type']>
      : ValueOfType<Declaration<N>['type']> | undefined;

export function optionsFor(command: string): OptionSpec[] {
  return OPTIONS.filter((o) => o.commands.includes(command));
}
