/**
 * The version of every `--json` document (their schemas are in docs/json/). Raised when a field changes
 * its type or meaning or goes away; a new field does not raise it.
 */
export const JSON_FORMAT_VERSION = 1;

/** Writes a command's `--json` document: `formatVersion` first, then the document's own fields. */
export function writeJson(out: NodeJS.WritableStream, doc: object): void {
  out.write(JSON.stringify({ formatVersion: JSON_FORMAT_VERSION, ...doc }, null, 2) + '\n');
}
