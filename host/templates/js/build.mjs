// Builds plugin.js into {{crate}}.wasm with no WASI imports.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';

const { component } = await componentize({
  sourcePath: 'plugin.js',
  witPath: 'wit',
  worldName: 'plugin',
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile('{{crate}}.wasm', component);
console.log(`built {{crate}}.wasm (${component.length} bytes)`);
