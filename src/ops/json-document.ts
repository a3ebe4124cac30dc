/**
 * The version of every `--json` document (their schemas are in docs/json/), and of `/status`. Raised when
 * a field changes its type or meaning or goes away; a new field does not raise it.
 */
export const JSON_FORMAT_VERSION = 1;

/** A `--json` document's text: `formatVersion` first, then the document's own fields. */
export function jsonDocument(doc: object): string {
  return JSON.stringify({ formatVersion: JSON_FORMAT_VERSION, ...doc }, null, 2) + '\n';
}

export function writeJson(out: NodeJS.WritableStream, doc: object): void {
  out.write(jsonDocument(doc));
}
