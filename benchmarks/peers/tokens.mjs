// Makes N distinct signed tokens for the token benchmarks, one per line, each granting
// every channel to its own `sub` and expiring in a day, with Node's crypto.
//   node benchmarks/peers/tokens.mjs ALG N OUT_TOKENS OUT_KEY
// ALG HS256: OUT_KEY receives the secret; RS256 / ES256: the PEM public key.
import { createHmac, generateKeyPairSync, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';

const [alg, n, outTokens, outKey] = process.argv.slice(2);
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const exp = Math.floor(Date.now() / 1000) + 86400;
let signer;
if (alg === 'HS256') {
  const secret = 'bench-secret-0123456789abcdef';
  writeFileSync(outKey, secret);
  signer = (input) => createHmac('sha256', secret).update(input).digest('base64url');
} else {
  const pair = alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(outKey, pair.publicKey.export({ type: 'spki', format: 'pem' }));
  signer = (input) => sign('sha256', Buffer.from(input),
    alg === 'RS256' ? pair.privateKey : { key: pair.privateKey, dsaEncoding: 'ieee-p1363' })
    .toString('base64url');
}
const lines = [];
for (let i = 0; i < Number(n); i++) {
  const input = `${b64({ alg, typ: 'JWT' })}.${b64({ sub: `user-${i}`, channels: ['*'], exp })}`;
  lines.push(`${input}.${signer(input)}`);
}
writeFileSync(outTokens, lines.join('\n') + '\n');
