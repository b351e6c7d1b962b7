// Writes the bytes the page uploads: node gen.mjs SEED SIZE OUTFILE
import fs from 'node:fs';

import { pseudoRandomBytes } from './prng.mjs';

const [seed, size, out] = process.argv.slice(2);
if (!out || !/^\d+$/.test(seed) || !/^\d+$/.test(size)) {
  console.error('usage: node gen.mjs SEED SIZE OUTFILE');
  process.exit(2);
}
fs.writeFileSync(out, pseudoRandomBytes(Number(seed), Number(size)));
