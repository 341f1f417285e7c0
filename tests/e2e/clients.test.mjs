// The clients the Ruby Jugglite served, in headless Chromium, on a page of another origin
// (app.mjs): a native EventSource with a token cookie, @microsoft/fetch-event-source with a
// Bearer header, event-source-polyfill reconnecting with lastEventId, and an XHR long-poll.
// jugglite checks tokens and asks the application's auth callback for the rest.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';
import { App } from './app.mjs';
import { Stack, launchChromium, waitFor } from './harness.mjs';

const secret = 'e2e-secret-0123456789abcdef';
const app = new App();
let stack;
let browser;

function hs256(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}
const hourFromNow = () => Math.floor(Date.now() / 1000) + 3600;

before(async () => {
  await app.listen();
  stack = new Stack({ tcp: true, args: ['--cors-origins', app.origin, '--jwt-secret', secret,
    '--auth-url', `${app.origin}/auth`, '--longpoll-max', '10'] });
  await stack.start();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  await app.close();
});

// A page of the application's origin in a fresh context, holding `cookies` for jugglite's
// host (127.0.0.1: cookies are per host, not per port).
async function openPage(cookies = {}) {
  const context = await browser.newContext();
  await context.addCookies(Object.entries(cookies).map(([name, value]) =>
    ({ name, value, domain: '127.0.0.1', path: '/' })));
  const page = await context.newPage();
  await page.goto(`${app.origin}/page.html`);
  await waitFor('page ready', () => page.evaluate(() => window.ready === true));
  return page;
}

const streamUrl = (channels) => `http://127.0.0.1:${stack.jugglitePort}/stream?channel=${channels}`;
const got = (page, name) => page.evaluate((n) => window.got[n], name);

test('a native cross-origin EventSource with withCredentials and a token cookie', async () => {
  const token = hs256({ sub: 'u1', channels: ['player_1'], exp: hourFromNow() });
  const page = await openPage({ jugglite_token: token });
  await page.evaluate((url) => { window.nativeSource(url); }, streamUrl('player_1,player_2'));
  await waitFor('open', async () => (await got(page, 'native'))?.opens === 1);
  await stack.waitSubscribed('player_1');
  assert.equal(await stack.redis('PUBSUB', 'NUMSUB', 'player_2'), 'player_2\n0');
  await stack.publish('player_2', 'not granted');
  await stack.publish('player_1', 'granted');
  await waitFor('message', async () => (await got(page, 'native')).messages.length === 1);
  assert.deepEqual((await got(page, 'native')).messages, [{ data: 'granted', lastEventId: '' }]);
  await page.context().close();
});

test('@microsoft/fetch-event-source with an Authorization: Bearer header (after a preflight)', async () => {
  const token = hs256({ sub: 'u2', channels: ['fetch_*'], exp: hourFromNow() });
  const page = await openPage();
  await page.evaluate(([url, t]) => { window.fetchSource(url, t); }, [streamUrl('fetch_a'), token]);
  await waitFor('open', async () => (await got(page, 'fetch'))?.opens === 1);
  assert.equal((await got(page, 'fetch')).status, 200);
  await stack.waitSubscribed('fetch_a');
  await stack.publish('fetch_a', JSON.stringify({ id: 'f-1', text: 'hi' }));
  await waitFor('message', async () => (await got(page, 'fetch')).messages.length === 1);
  assert.equal((await got(page, 'fetch')).messages[0].lastEventId, 'f-1');
  await page.context().close();
});

test('event-source-polyfill with a session cookie reconnects with lastEventId', async () => {
  const page = await openPage({ session: 'alice' });
  await page.evaluate((url) => { window.polyfillSource(url); }, streamUrl('user_alice,user_bob'));
  await waitFor('open', async () => (await got(page, 'polyfill'))?.opens === 1);
  await stack.waitSubscribed('user_alice');
  assert.equal(await stack.redis('PUBSUB', 'NUMSUB', 'user_bob'), 'user_bob\n0');
  assert.equal(app.callbacks.at(-1).channels, 'user_alice,user_bob');
  await stack.publish('user_alice', JSON.stringify({ id: 'm-1', text: 'first' }));
  await waitFor('first', async () => (await got(page, 'polyfill')).messages.length === 1);

  await stack.killJugglite();
  await stack.startJugglite();
  await waitFor('reconnect', async () => (await got(page, 'polyfill')).opens === 2, 20000);
  assert.match(app.callbacks.at(-1).uri, /[?&]lastEventId=m-1(&|$)/);
  await stack.waitSubscribed('user_alice');
  await stack.publish('user_alice', 'after the restart');
  await waitFor('second', async () => (await got(page, 'polyfill')).messages.length === 2);
  await page.context().close();
});

test('an XHR long-poll ends after the message, as Remy\'s polyfill expects', async () => {
  const page = await openPage({ session: 'bob' });
  await page.evaluate((url) => { window.longPoll(url); }, streamUrl('user_bob'));
  await stack.waitSubscribed('user_bob');
  await stack.publish('user_bob', 'polled');
  await waitFor('poll done', async () => (await got(page, 'xhr')).done.length === 1);
  const [done] = (await got(page, 'xhr')).done;
  assert.equal(done.status, 200);
  assert.match(done.body, /: registered to channels: user_bob\n[^]*data: polled\n\n$/);
  await page.context().close();
});

test('an origin not in --cors-origins is refused by the browser', async () => {
  const page = await browser.newPage();
  await page.goto(`http://localhost:${app.port}/page.html`);  // another origin, same app
  await waitFor('page ready', () => page.evaluate(() => window.ready === true));
  await page.evaluate((url) => { window.longPoll(url); }, streamUrl('public_x'));
  await waitFor('error', async () => (await got(page, 'xhr'))?.errors === 1);
  await page.close();
});
