// A browser refused at capacity comes back by itself: jugglite answers an EventSource it
// turns away with 200 + `retry:` (any other status would close it for good), so Chromium's
// EventSource keeps retrying and gets in once there is room. Through the shipped nginx config.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Stack, launchChromium, rawStream, sleep, waitFor } from './harness.mjs';

const stack = new Stack({ args: ['--max-conns', '1'] });
let browser;

before(async () => {
  await stack.start();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await stack.stop();
});

test('Chromium EventSource refused at --max-conns retries by itself and gets in once there is room', async () => {
  // Hold the only slot. The harness's own readiness probe may still hold it for a moment.
  let holder;
  await waitFor('the holder registered', async () => {
    holder?.close();
    holder = rawStream(stack.port, '/stream?channel=hold');
    await sleep(300);
    return holder.text().includes(': registered to channels: hold\n');
  });

  const page = await browser.newPage();
  await page.goto(`${stack.base}/?channel=cap`);
  // Refused twice: it was answered, closed, and came back on its own (a 503 would have
  // left it CLOSED after the first).
  await waitFor('two refusals', () => page.evaluate(() => window.errors >= 2), 20000);
  assert.notEqual(await page.evaluate(() => window.source.readyState), 2 /* CLOSED */);
  assert.equal((await page.evaluate(() => window.events)).length, 0);

  holder.close();
  // Within a few retries (1-5 s each) it is in: jugglite subscribed its channel for it.
  await waitFor('the page subscribed', async () =>
    (await stack.redis('PUBSUB', 'NUMSUB', 'cap')).split('\n')[1] === '1', 25000);
  // Registered means subscribed, but the page's registration can trail NUMSUB by a moment.
  await waitFor('the page registered', async () => {
    await stack.publish('cap', 'let in');
    return (await page.evaluate(() => window.events)).length >= 1;
  });
  const ev = await page.evaluate(() => window.events);
  assert.equal(ev[0].data, 'let in');
  await page.close();
});
