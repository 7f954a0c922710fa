// Verify Traza-made tokens with the independent `jose` npm package (panva/jose).
// Usage: node bench/interop/jose_verify.mjs TOKENS.json   (run from a folder where `jose` is installed,
// or set NODE_PATH; see README.md). Exit 0 only if every valid case verifies and every invalid one fails.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { compactVerify, importJWK, jwtVerify } from "jose";

const require = createRequire(import.meta.url);
let joseVersion = "unknown";
try {
  joseVersion = require("jose/package.json").version;
} catch {
  /* jose's exports map may hide package.json */
}

const file = process.argv[2];
if (!file) {
  console.error("usage: node jose_verify.mjs TOKENS.json");
  process.exit(2);
}
const { cases } = JSON.parse(readFileSync(file, "utf8"));
let failures = 0;
for (const c of cases) {
  // The algorithm comes from our side (the manifest), never from the token header.
  const key = await importJWK(c.jwk, c.alg);
  let ok = false;
  let detail = "";
  try {
    const { protectedHeader } = await compactVerify(c.token, key, { algorithms: [c.alg] });
    if (protectedHeader.typ !== c.typ) throw new Error(`typ ${protectedHeader.typ}`);
    // Also as a JWT: checks typ, iat/exp where present.
    const { payload } = await jwtVerify(c.token, key, { algorithms: [c.alg], typ: c.typ });
    detail = `iss=${payload.iss} jti=${payload.jti}`;
    ok = true;
  } catch (err) {
    detail = `${err.code ?? err.name}: ${err.message}`;
  }
  const pass = ok === c.valid;
  if (!pass) failures += 1;
  console.log(`${pass ? "PASS" : "FAIL"} ${c.name.padEnd(24)} verified=${ok} expected=${c.valid} ${detail}`);
}
console.log(`jose ${joseVersion}, node ${process.version}: ${cases.length - failures}/${cases.length} as expected`);
process.exit(failures ? 1 : 0);
