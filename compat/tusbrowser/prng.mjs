// The test file's bytes: mulberry32 seeded with a 32-bit integer, each 32-bit output written
// little-endian. The page (bundled) builds its File from it and gen.mjs rebuilds the same bytes
// in Node, so the object the gateway stored can be compared byte for byte.
export function pseudoRandomBytes(seed, size) {
  const out = new Uint8Array(size);
  let a = seed >>> 0;
  for (let i = 0; i < size; i += 4) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    t = (t ^ (t >>> 14)) >>> 0;
    for (let j = 0; j < 4 && i + j < size; j++) out[i + j] = (t >>> (8 * j)) & 0xff;
  }
  return out;
}
