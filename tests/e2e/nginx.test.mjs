// deploy/nginx/jugglite.conf in front of jugglite on a unix socket: frames and keepalive
// comments pass through nginx as they are written, not when a buffer fills.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { Stack, rawStream, waitFor } from './harness.mjs';

const stack = new Stack({ keepalive: 1 });
before(() => stack.start());
after(() => stack.stop());

test('a published message arrives through nginx without buffering delay', async () => {
  const s = rawStream(stack.port, '/stream?channel=via-nginx');
  await waitFor('registration', () => s.text().includes(': registered to channels: via-nginx\n'));
  assert.match(s.text(), /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(s.text(), /Content-Type: text\/event-stream;charset=utf-8\r\n/);
  await stack.waitSubscribed('via-nginx');
  const sent = Date.now();
  await stack.publish('via-nginx', 'small');  // a few bytes: a buffering proxy would sit on it
  await waitFor('frame', () => s.text().includes('data: small\n\n'), 5000);
  const delay = s.arrival('data: small\n\n') - sent;
  assert.ok(delay < 500, `frame took ${delay} ms through nginx`);
  s.close();
});

test('keepalive comments pass through nginx', async () => {
  const s = rawStream(stack.port, '/stream?channel=quiet');
  await waitFor('registration', () => s.text().includes(': registered to channels: quiet\n'));
  await waitFor('keepalive', () => /: keepalive \d+\n\n/.test(s.text()), 5000);
  s.close();
});

test('/healthz is proxied', async () => {
  const res = await fetch(`${stack.base}/healthz`);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), 'ok\n');
});

test('nginx serves the application page itself', async () => {
  const res = await fetch(`${stack.base}/`);
  assert.equal(res.status, 200);
  assert.match(await res.text(), /new EventSource/);
});

test('the access log carries a stream request with its token redacted', async () => {
  const s = rawStream(stack.port, '/stream?channel=logged&token=secret.token.value&x=1');
  await waitFor('registration', () => s.text().includes(': registered to channels: logged\n'));
  s.close();
  // nginx logs a request when it ends.
  await waitFor('log line', () => fs.existsSync(`${stack.dir}/access.log`) &&
    fs.readFileSync(`${stack.dir}/access.log`, 'utf8').includes('channel=logged'), 5000);
  const log = fs.readFileSync(`${stack.dir}/access.log`, 'utf8');
  assert.match(log, /"GET \/stream\?channel=logged&token=REDACTED&x=1 HTTP\/1\.1" 200 /);
  assert.ok(!log.includes('secret.token.value'));
});
