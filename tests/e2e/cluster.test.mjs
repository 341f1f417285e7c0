// Redis Cluster (--redis-cluster, sharded pub/sub) with a browser: Chromium's own
// EventSource behind the shipped nginx config with two jugglite nodes, through a master's
// failover and through the stop of the browser's node.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Stack, launchChromium, nodeOf as nodeOfIn, openPage as openPageIn, waitFor } from './harness.mjs';

const stack = new Stack({ nodes: 2, cluster: true });
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

const nodeOf = () => nodeOfIn(stack);

test('a master fails over: the browser\'s stream stays open and messages flow again', async () => {
  const channel = 'cl-failover';
  const page = await openPage(channel);
  await stack.publish(channel, 'before');
  await waitFor('before the kill', async () => (await received(page)).length === 1);
  const node = await nodeOf();

  const master = stack.clusterMasterOf(channel);
  await stack.killRedis(master);
  await waitFor('its node unready', async () => (await stack.status(node, '/readyz')) === 503, 5000);
  await waitFor('a new master', () => {
    const now = stack.clusterMasterOf(channel);
    return now !== undefined && now !== master;
  }, 20000);
  await waitFor('its node ready again', async () => (await stack.status(node, '/readyz')) === 200, 20000);
  await stack.waitSubscribed(channel);
  await stack.publish(channel, 'after');
  await waitFor('after the failover', async () => (await received(page)).length === 2, 10000);
  assert.deepEqual(await received(page), ['before', 'after']);
  // The EventSource never saw an error: the stream was not closed.
  assert.equal(await page.evaluate(() => window.errors ?? 0), 0);
  assert.equal(await page.evaluate(() => window.opens), 1);
  await page.close();
});

test('its node stops: the browser moves to the other node through nginx', async () => {
  const channel = 'cl-node-stop';
  const page = await openPage(channel);
  await stack.publish(channel, 'one');
  await waitFor('before the stop', async () => (await received(page)).length === 1);
  const node = await nodeOf();
  await stack.killJugglite(node, 'SIGTERM');
  const other = 1 - node;
  await waitFor('the page on the other node', async () =>
    (await stack.metric(other, 'jugglite_connections_open')) >= 1, 20000);
  await waitFor('the page reopened', () => page.evaluate(() => window.opens >= 2));
  await stack.waitSubscribed(channel);
  await stack.publish(channel, 'two');
  await waitFor('after the move', async () => (await received(page)).length === 2, 10000);
  assert.deepEqual(await received(page), ['one', 'two']);
  await stack.startJugglite(node);
  await page.close();
});
