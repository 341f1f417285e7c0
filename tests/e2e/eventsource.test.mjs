// The npm `eventsource` package, a spec-following client, through nginx: the same cases as
// the browser test.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { EventSource } from 'eventsource';
import { Stack, waitFor } from './harness.mjs';

const stack = new Stack();
before(() => stack.start());
after(() => stack.stop());

function open(channel) {
  const es = new EventSource(`${stack.base}/stream?channel=${encodeURIComponent(channel)}`);
  const got = { messages: [], updates: [], opened: false };
  es.onopen = () => { got.opened = true; };
  es.onmessage = (e) => got.messages.push({ data: e.data, lastEventId: e.lastEventId });
  es.addEventListener('update', (e) => got.updates.push({ data: e.data, lastEventId: e.lastEventId }));
  return { es, got };
}

test('plain, multi-line, JSON event and JSON id messages', async () => {
  const { es, got } = open('node-client');
  await waitFor('open', () => got.opened);
  await stack.waitSubscribed('node-client');

  await stack.publish('node-client', 'hello');
  await waitFor('plain', () => got.messages.length === 1);
  assert.equal(got.messages[0].data, 'hello');

  await stack.publish('node-client', 'line one\nline two\r\nline three');
  await waitFor('multi-line', () => got.messages.length === 2);
  assert.equal(got.messages[1].data, 'line one\nline two\nline three');

  const update = JSON.stringify({ event: 'update', value: 42 });
  await stack.publish('node-client', update);
  await waitFor('event listener', () => got.updates.length === 1);
  assert.equal(got.updates[0].data, update);
  assert.equal(got.messages.length, 2, 'a named event does not reach onmessage');

  const withId = JSON.stringify({ id: 'msg-7', text: 'with id' });
  await stack.publish('node-client', withId);
  await waitFor('id', () => got.messages.length === 3);
  assert.equal(got.messages[2].data, withId);
  assert.equal(got.messages[2].lastEventId, 'msg-7');
  es.close();
});

test('reconnects by itself after jugglite restarts', async () => {
  const { es, got } = open('node-restart');
  await waitFor('open', () => got.opened);
  await stack.waitSubscribed('node-restart');
  await stack.killJugglite();
  await stack.startJugglite();
  await stack.waitSubscribed('node-restart', 1);  // the client came back on its own
  await stack.publish('node-restart', 'after restart');
  await waitFor('message after restart', () => got.messages.some((m) => m.data === 'after restart'), 15000);
  es.close();
});
