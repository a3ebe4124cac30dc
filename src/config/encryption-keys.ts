import fs from 'node:fs';
import { PitrError } from '../errors';
import { parseKeyring, type Keyring } from '../storage/encrypted/keyring';
import type { ParsedOptions } from './parse-args';

/** Where keys may come from besides --encryption-key-file: the environment only, so they never show in `ps`. */
export const KEY_ENV = 'PITR_ENCRYPTION_KEY';

/**
 * The keys --encryption-key-file (PITR_ENCRYPTION_KEY_FILE) or PITR_ENCRYPTION_KEY give, or undefined
 * when neither does. Key material never appears in a message.
 */
export function keyringFrom(options: ParsedOptions, env: NodeJS.ProcessEnv = process.env): Keyring | undefined {
  const file = options.string('encryption-key-file');
  const inline = env[KEY_ENV];
  if (file !== undefined && inline !== undefined && inline !== '')
    throw new PitrError(
      'Usage',
      `both a key file (${file}) and ${KEY_ENV} give encryption keys`,
      `give one of them: put every key in the file, or unset ${KEY_ENV}`,
    );
  if (file !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (error) {
      throw new PitrError(
        'Key',
        `cannot read the encryption key file ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
        "check --encryption-key-file or PITR_ENCRYPTION_KEY_FILE and the file's permissions",
      );
    }
    return parseKeyring(text, `key file ${file}`);
  }
  if (inline !== undefined && inline !== '') return parseKeyring(inline, KEY_ENV);
  return undefined;
}
