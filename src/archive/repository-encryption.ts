import { PitrError, isPitrError } from '../errors';
import { EncryptedStorage } from '../storage/encrypted/encrypted-storage';
import type { Keyring } from '../storage/encrypted/keyring';
import type { Storage } from '../storage/storage';
import { LEASE_PREFIX } from './lease-record';
import { IDENTITY_OBJECT, Repository } from './repository';

/**
 * Stored plaintext in an encrypted repository: repository.json (the repository's identity, which says
 * that it is encrypted, readable without a key) and the writer lease (fencing must work for any process
 * that reaches the repository, and its generations are compared byte for byte by create-only writes;
 * it names a host and a process, nothing of the data).
 */
export const storedPlain = (name: string): boolean => name === IDENTITY_OBJECT || name.startsWith(LEASE_PREFIX);

/**
 * The storage a repository's commands use: wrapped in EncryptedStorage when repository.json says the
 * repository is encrypted, or when a key is given for a repository not created yet (the first write
 * creates it encrypted). Refuses a key for an unencrypted repository, and for a command that writes an
 * encrypted repository without a key or without the right key for its newest segment; a command that
 * reads without a key fails on the first sealed object it reads, except verify, which checks what needs
 * no key (ops/verify-sealed.ts).
 */
export async function repositoryStorage(storage: Storage, keyring: Keyring | undefined, use: 'read' | 'write'): Promise<Storage> {
  let encrypted: boolean | undefined;
  let firstKeyId: string | undefined;
  try {
    const identity = await new Repository(storage).identity();
    encrypted = identity ? identity.encryption !== undefined : undefined;
    firstKeyId = identity?.encryption?.firstKeyId;
  } catch {
    // unreachable or damaged: decided by what was given; the command meets the same error itself
    encrypted = undefined;
  }
  if (encrypted === false && keyring)
    throw new PitrError(
      'Key',
      `repository ${storage.location} is not encrypted, but an encryption key was given`,
      'give no key for it (unset PITR_ENCRYPTION_KEY and PITR_ENCRYPTION_KEY_FILE, drop --encryption-key-file), or archive into a new repository to have it encrypted',
    );
  if (encrypted === true && !keyring && use === 'write')
    throw new PitrError(
      'Key',
      `repository ${storage.location} is encrypted and no encryption key was given (it was created with key "${firstKeyId ?? '?'}")`,
      'give the key file with --encryption-key-file or PITR_ENCRYPTION_KEY_FILE, or the key in PITR_ENCRYPTION_KEY (docs/runbooks/encryption-keys.md)',
    );
  if (!(encrypted === true || keyring)) return storage;
  const sealed = new EncryptedStorage(storage, keyring, storedPlain);
  // A writer must hold the key of the newest segment (the archiver opens it to continue the chain): a
  // wrong key under a known id is refused here, before anything is sealed with it. Other problems are
  // left to the command, which meets them itself.
  if (encrypted === true && use === 'write')
    await new Repository(sealed).latestSegment().catch((error: unknown) => {
      if (isPitrError(error, 'Key')) throw error;
    });
  return sealed;
}
