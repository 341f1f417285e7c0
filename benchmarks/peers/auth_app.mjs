// A trivial application for the auth callback benchmarks: grants every channel to the
// `session` cookie's user, 401 without one. Keep-alive, as Node's http server does.
//   node benchmarks/peers/auth_app.mjs PORT
import http from 'node:http';

const port = Number(process.argv[2] ?? 0);
let answered = 0;
http.createServer((req, res) => {
  answered += 1;
  const user = /(?:^|;\s*)session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
  if (!user) { res.writeHead(401, { 'Content-Length': 2 }).end('{}'); return; }
  const body = JSON.stringify({ channels: ['*'], sub: user });
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) })
    .end(body);
}).listen(port, '127.0.0.1', function () {
  console.log(`listening ${this.address().port}`);
});
process.on('SIGTERM', () => { console.log(`answered ${answered}`); process.exit(0); });
