// Builds a plugin folder's `plugin.js` (relative to this file, or absolute)
// into a component at the path given on the command line. Every WASI feature is disabled, so the
// component imports nothing but the host interface the DMP host grants.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const [plugin, output] = process.argv.slice(2);
if (!plugin || !output) {
  console.error('usage: node build.mjs PLUGIN_DIR OUTPUT.wasm');
  process.exit(2);
}
const { component } = await componentize({
  sourcePath: resolve(here, plugin, 'plugin.js'),
  witPath: resolve(here, '../../wit'),
  worldName: 'plugin',
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(output, component);
console.log(`built ${output} (${component.length} bytes)`);
