'use strict';
/**
 * The layers of src/, top to bottom. A folder may import its own files and the folders below it, never
 * one above (docs/architecture.md, "Code layout"). Root files (errors.ts, logger.ts, backoff.ts) are
 * below everything; `npm run lint` runs this check.
 */
const LAYERS = [['cli'], ['demo', 'ops'], ['restore'], ['backup'], ['capture'], ['archive', 'config'], ['storage'], ['pg']];

const forbidden = [{ name: 'no-circular', severity: 'error', comment: 'modules must not import each other in a circle', from: {}, to: { circular: true } }];
LAYERS.forEach((layer, depth) => {
  const above = LAYERS.slice(0, depth).flat();
  const sameLevel = layer;
  for (const folder of layer) {
    const upward = [...above, ...sameLevel.filter((other) => other !== folder)];
    if (upward.length === 0) continue;
    forbidden.push({
      name: `layer-${folder}`,
      severity: 'error',
      comment: `src/${folder} may import only the folders below it`,
      from: { path: `^src/${folder}/` },
      to: { path: `^src/(${upward.join('|')})/` },
    });
  }
});
forbidden.push({
  name: 'root-files-below-everything',
  severity: 'error',
  comment: 'errors.ts, logger.ts and backoff.ts are imported by every layer and import none of them',
  from: { path: '^src/[^/]+\\.ts$' },
  to: { path: '^src/[^/]+/' },
});

module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.build.json' },
    tsPreCompilationDeps: true,
  },
};
