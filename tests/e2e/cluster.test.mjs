// Redis Cluster (--redis-cluster, sharded pub/sub, --history) with a browser: Chromium's
// own EventSource behind the shipped nginx config with two jugglite nodes, through a
// master's failover and through the stop of the browser's node, losing nothing.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Stack, launchChromium, nodeOf as nodeOfIn, openPage as openPageIn, waitFor } from './harness.mjs';

const stack = new Stack({ nodes: 2, cluster: true, args: ['--history'] });
let browser;

before(async () => {
  await stack.start();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await stack.stop();
});

const openPage = (channel) => openPageIn(stack, browser, channel);

const received = (page) => page.evaluate(() => window.events.map((e) => e.data));

const isId = (text) => /^\d+-\d+$/.test(text);

// FCALL jugglite_publish on the channel's master, once jugglite has loaded the library there.
async function fcall(channel, payload) {
  let id;
  await waitFor(`the library on ${channel}'s master`, async () => isId(id = await stack.fcall(channel, payload)), 20000);
  return id;
}

const nodeOf = () => nodeOfIn(stack);

test('a master fails over: the browser\'s stream stays open and misses nothing published meanwhile', async () => {
  const channel = 'cl-failover';
  await fcall(channel, 'warm-up');  // the library is loaded: the page starts after it
  const page = await openPage(channel);
  const sent = ['before'];
  await fcall(channel, 'before');
  await waitFor('before the kill', async () => (await received(page)).length === 1);
  const node = await nodeOf();

  const master = stack.clusterMasterOf(channel);
  await stack.killRedis(master);
  await waitFor('its node unready', async () => (await stack.status(node, '/readyz')) === 503, 5000);
  // Published on the new master as soon as it takes writes, before jugglite is back on it.
  await waitFor('a new master', async () => {
    const now = stack.clusterMasterOf(channel);
    if (now === undefined || now === master) return false;
    const m = `during-${sent.length}`;
    if (!isId(await stack.fcall(channel, m))) return false;
    sent.push(m);
    return true;
  }, 20000);
  await waitFor('its node ready again', async () => (await stack.status(node, '/readyz')) === 200, 20000);
  sent.push('after');
  await fcall(channel, 'after');
  await waitFor('after the failover', async () => (await received(page)).length === sent.length, 10000);
  await new Promise((r) => setTimeout(r, 300));  // nothing more may follow
  assert.deepEqual(await received(page), sent);
  // The EventSource never saw an error: the stream was not closed.
  assert.equal(await page.evaluate(() => window.errors ?? 0), 0);
  assert.equal(await page.evaluate(() => window.opens), 1);
  await page.close();
});

test('its node stops: the browser moves to the other node through nginx and loses nothing', async () => {
  const channel = 'cl-node-stop';
  await fcall(channel, 'warm-up');
  const page = await openPage(channel);
  const sent = [];
  const publish = async (m) => { sent.push([m, await fcall(channel, m)]); };
  await publish('one');
  await waitFor('before the stop', async () => (await received(page)).length === 1);
  const node = await nodeOf();
  await stack.killJugglite(node, 'SIGTERM');
  for (const m of ['g1', 'g2', 'g3']) await publish(m);
  const other = 1 - node;
  await waitFor('the page on the other node', async () =>
    (await stack.metric(other, 'jugglite_connections_open')) >= 1, 20000);
  await waitFor('the page reopened', () => page.evaluate(() => window.opens >= 2));
  await publish('two');
  await waitFor('after the move', async () => (await received(page)).length === sent.length, 10000);
  await new Promise((r) => setTimeout(r, 300));
  const withIds = await page.evaluate(() => window.events.map((e) => [e.data, e.lastEventId]));
  assert.deepEqual(withIds, sent);
  assert.ok((await stack.metric(other, 'jugglite_history_resumes_total')) >= 1);
  await stack.startJugglite(node);
  await page.close();
});
