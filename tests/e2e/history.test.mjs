// Resume (--history) with the browser's own EventSource: Chromium reconnects with
// Last-Event-ID by itself, and jugglite replays what it missed, through the shipped nginx
// config, after a restart and after its node stops and nginx sends it to the other one.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Stack, launchChromium, nodeOf as nodeOfIn, openPage as openPageIn, waitFor } from './harness.mjs';

const stack = new Stack({ nodes: 2, args: ['--history'] });
let browser;

before(async () => {
  await stack.start();
  browser = await launchChromium();
  await waitFor('the history library', async () =>
    (await stack.redis('FCALL_RO', 'jugglite_version', '0')) === '1');
});

after(async () => {
  await browser?.close();
  await stack.stop();
});

const fcall = (channel, payload) => stack.fcall(channel, payload);

const openPage = (channel) => openPageIn(stack, browser, channel);

const received = (page) => page.evaluate(() => window.events.map((e) => [e.data, e.lastEventId]));

const nodeOf = () => nodeOfIn(stack);

test('Chromium resumes by itself after jugglite is killed: every message once, in order', async () => {
  const page = await openPage('resume-restart');
  const ids = [];
  for (const m of ['a1', 'a2']) ids.push(await fcall('resume-restart', m));
  await waitFor('before the kill', async () => (await received(page)).length === 2);
  // Both nodes go: nothing is left to hear these five but Redis.
  await stack.killJugglite(0);
  await stack.killJugglite(1);
  await waitFor('error seen by the page', () => page.evaluate(() => window.errors >= 1));
  for (const m of ['d1', 'd2', 'd3', 'd4', 'd5']) ids.push(await fcall('resume-restart', m));
  await stack.startJugglite(0);
  await stack.startJugglite(1);
  await waitFor('all seven', async () => (await received(page)).length >= 7, 20000);
  await new Promise((r) => setTimeout(r, 300));  // nothing more may follow
  assert.deepEqual(await received(page),
    ['a1', 'a2', 'd1', 'd2', 'd3', 'd4', 'd5'].map((m, i) => [m, ids[i]]));
  await page.close();
});

test('its node stops: the browser moves to the other node through nginx and loses nothing', async () => {
  const page = await openPage('resume-failover');
  const sent = [];
  const publish = async (m) => { sent.push([m, await fcall('resume-failover', m)]); };
  for (const m of ['b1', 'b2', 'b3']) await publish(m);
  await waitFor('before the stop', async () => (await received(page)).length === 3);
  const node = await nodeOf();
  await stack.killJugglite(node, 'SIGTERM');
  for (const m of ['g1', 'g2', 'g3']) await publish(m);
  const other = 1 - node;
  await waitFor('the page on the other node', async () =>
    (await stack.metric(other, 'jugglite_connections_open')) >= 1, 20000);
  for (const m of ['c1', 'c2']) await publish(m);
  await waitFor('all eight', async () => (await received(page)).length >= 8, 20000);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await received(page), sent);
  assert.ok((await stack.metric(other, 'jugglite_history_resumes_total')) >= 1);
  await stack.startJugglite(node);
  await page.close();
});
