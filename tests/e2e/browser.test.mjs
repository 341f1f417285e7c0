// Headless Chromium (Debian's package, driven by playwright-core) opens the application
// page served by nginx; its EventSource receives through deploy/nginx/jugglite.conf.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Stack, launchChromium, waitFor } from './harness.mjs';

const stack = new Stack();
let browser;
let page;

before(async () => {
  await stack.start();
  browser = await launchChromium();
  page = await browser.newPage();
});

after(async () => {
  await browser?.close();
  await stack.stop();
});

const events = () => page.evaluate(() => window.events);

async function waitEvents(n, what, timeout = 10000) {
  await waitFor(what, async () => (await events()).length >= n, timeout);
  return events();
}

test('EventSource in Chromium: plain, multi-line, event listener and lastEventId', async () => {
  await page.goto(`${stack.base}/?channel=browser`);
  await waitFor('EventSource open', () => page.evaluate(() => window.opens >= 1));
  await stack.waitSubscribed('browser');

  await stack.publish('browser', 'hello browser');
  let ev = await waitEvents(1, 'plain message');
  assert.deepEqual(ev[0], { kind: 'message', type: 'message', data: 'hello browser', lastEventId: '' });

  await stack.publish('browser', 'first\nsecond\rthird');
  ev = await waitEvents(2, 'multi-line message');
  assert.equal(ev[1].data, 'first\nsecond\nthird');

  const update = JSON.stringify({ event: 'update', n: 1 });
  await stack.publish('browser', update);
  ev = await waitEvents(3, 'named event');
  assert.deepEqual(ev[2], { kind: 'listener', type: 'update', data: update, lastEventId: '' });

  const withId = JSON.stringify({ id: 77, text: 'has an id' });
  await stack.publish('browser', withId);
  ev = await waitEvents(4, 'message with id');
  assert.deepEqual(ev[3], { kind: 'message', type: 'message', data: withId, lastEventId: '77' });
});

test('Chromium reconnects by itself after jugglite is killed and restarted', async () => {
  const before = (await events()).length;
  await stack.killJugglite();
  await waitFor('error seen by the page', () => page.evaluate(() => window.errors >= 1));
  await stack.startJugglite();
  await waitFor('page reopened', () => page.evaluate(() => window.opens >= 2), 15000);
  await stack.waitSubscribed('browser');
  await stack.publish('browser', 'after restart');
  const ev = await waitEvents(before + 1, 'message after restart', 15000);
  assert.equal(ev.at(-1).data, 'after restart');
});
