import type { Readable } from 'node:stream';

/**
 * The storage contract every repository driver keeps. Object names are relative to the repository root,
 * use '/' as separator, and never start with '/'.
 *
 * Terminology: an object is "archived" once a put of it has returned. Archived objects are immutable:
 * a driver must never replace an existing object with different bytes.
 */
export interface Storage {
  /** Human-readable location, without credentials (for logs and messages). */
  readonly location: string;

  /**
   * Optional feature: reading an object twice costs about what reading it once does (a local disk), so a
   * reader that must check an object whole before using its bytes may hash it, then read it again,
   * rather than spool a copy. Absent means false.
   */
  readonly rereadIsCheap?: boolean;

  /**
   * Optional feature: the storage encrypts what it stores (encrypted/encrypted-storage.ts). Reads and
   * writes still take and give plaintext; `stat` and `list` give plaintext sizes and no MD5. Absent: bytes
   * are stored as given.
   */
  readonly encryption?: StorageEncryption;

  /**
   * Store `source` under `name`, create-only and durably: when the promise resolves the bytes survive a
   * crash of this machine (local: temporary file, fsync, link, directory fsync; GCS: upload with
   * ifGenerationMatch=0 and an MD5 the server validates).
   * If an object of that name already exists with identical bytes this is a no-op returning 'identical';
   * with different bytes it throws PitrError('Integrity') and leaves the existing object untouched.
   */
  put(name: string, source: PutSource): Promise<PutResult>;

  /**
   * Create-only like `put`, for objects that more than one process may try to create (the generations of
   * the writer lease): an existing object with different bytes is an answer, 'taken', not an error. Two
   * processes creating the same name at once: exactly one gets 'created' (GCS: ifGenerationMatch=0; local:
   * link(), which fails when the name exists). A retry of our own create that had landed answers 'identical'.
   */
  create(name: string, data: Buffer): Promise<PutResult | 'taken'>;

  /** Whole object. Throws PitrError('NotFound') when absent. */
  read(name: string): Promise<Buffer>;

  /** Stream of the object (optionally a byte range, `end` inclusive). Errors with PitrError('NotFound'). */
  readStream(name: string, range?: { start: number; end?: number }): Readable;

  /** Size and checksums of an object, or null when it does not exist. */
  stat(name: string): Promise<ObjectInfo | null>;

  /**
   * Objects whose name starts with `prefix`, in ascending name order. With `delimiter: '/'` names that
   * continue past the next '/' are folded into `prefixes` (like a directory listing). With `startAfter`,
   * only names (and prefixes) sorting after it: the tail of a long listing without the rest of it.
   */
  list(prefix: string, options?: ListOptions): Promise<ListResult>;

  /** Remove an object; removing an absent object is not an error. */
  remove(name: string): Promise<void>;

  /** Probe that the repository can be written (used by `init` and at archiver start). */
  checkWritable(): Promise<void>;

  /**
   * The storage's own clock: the modification time it gives an object written now (a probe, removed
   * again). Compared with `ObjectInfo.modifiedAt`, it tells an object's age without trusting this
   * machine's clock, which may differ from the clock of the machine that wrote the object.
   */
  now(): Promise<Date>;
}

/** What an encrypting storage tells its callers (docs/format.md, "Encryption"). */
export interface StorageEncryption {
  /** The sealed format's name and version, recorded in repository.json. */
  readonly scheme: string;
  /** The key id new objects are sealed with; undefined when no key was given (contents cannot be read). */
  readonly currentKeyId: string | undefined;
  /** Whether the object of that name is stored encrypted (repository.json and the lease are not). */
  isSealed(name: string): boolean;
  /**
   * Checks a sealed object without the key: its header, and the SHA-256 of its stored bytes against the
   * one in its trailer. Returns the stored size and, when it fails, what is wrong. NotFound when absent.
   */
  checkEnvelope(name: string): Promise<{ bytes: number; problem?: string }>;
}

export type PutSource =
  | { kind: 'buffer'; data: Buffer }
  /** A local file the caller owns; the driver may consume (move) it when `consume` is true. */
  | { kind: 'file'; path: string; consume?: boolean };

export type PutResult = 'created' | 'identical';

export interface ObjectInfo {
  name: string;
  size: number;
  /** Base64 MD5 of the bytes when the driver knows it cheaply. */
  md5?: string;
  /** When the object was written, by the storage's clock (see `Storage.now`). */
  modifiedAt?: Date;
  /** The storage class the object is stored in (GCS: STANDARD, NEARLINE, COLDLINE, ARCHIVE), when the storage has classes. */
  storageClass?: string;
}

export interface ListOptions {
  delimiter?: '/';
  startAfter?: string;
}

export interface ListResult {
  objects: ObjectInfo[];
  prefixes: string[];
}
