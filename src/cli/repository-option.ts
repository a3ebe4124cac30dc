import { Repository } from '../archive/repository';
import type { ParsedOptions } from '../config/parse-args';
import { openStorage } from '../storage/open-storage';

export async function repositoryFrom(options: ParsedOptions): Promise<Repository> {
  const endpoint = options.string('gcs-endpoint');
  return new Repository(await openStorage(options.string('repo'), endpoint ? { gcsEndpoint: endpoint } : {}));
}
