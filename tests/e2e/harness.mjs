// The real parts for the e2e tests: a redis-server (or a 3-master, 3-replica Redis
// Cluster) and jugglite on free ports/sockets, and Debian's nginx running
// deploy/nginx/jugglite.conf in front of them.
import { spawn, execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '../..');
export const jugglite = process.env.JUGGLITE_BINARY ?? path.join(root, 'build/release/jugglite');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what, pred, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await pred()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A free port whose Redis Cluster bus port (+10000) is free too.
async function freeClusterPort() {
  const bindable = (port) => new Promise((resolve) => {
    const s = net.createServer().once('error', () => resolve(false))
      .listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
  for (;;) {
    const p = 20000 + Math.floor(Math.random() * 25000);
    if (await bindable(p) && await bindable(p + 10000)) return p;
  }
}

function canConnect(opts) {
  return new Promise((resolve) => {
    const c = net.connect(opts, () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

export class Stack {
  // { keepalive } seconds for jugglite; { args } more jugglite flags; { tcp: true } runs
  // jugglite on a TCP port of its own (this.jugglitePort) and no nginx; { nodes } jugglite
  // processes behind nginx's upstream, each on its own socket (this.sockets); { cluster:
  // true } a Redis Cluster (3 masters, 3 replicas, cluster-node-timeout 1.5 s) instead of
  // one redis-server, with jugglite on --redis-cluster.
  constructor({ keepalive = 20, args = [], tcp = false, nodes = 1, cluster = false } = {}) {
    this.keepalive = keepalive;
    this.args = args;
    this.tcp = tcp;
    this.cluster = cluster;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jugglite-e2e-'));
    fs.chmodSync(this.dir, 0o755);  // nginx workers (www-data) reach the socket and page
    this.sockets = Array.from({ length: nodes }, (_, i) =>
      path.join(this.dir, i === 0 ? 'jugglite.sock' : `jugglite-${i}.sock`));
    this.socket = this.sockets[0];
    this.procs = {};
  }

  async start() {
    if (this.cluster) {
      await this.startCluster();
    } else {
      this.redisPort = await freePort();
      this.procs.redis = this.#spawn('redis', 'redis-server', ['--port', String(this.redisPort),
        '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir]);
    }
    await waitFor('redis', () => this.redis('PING').then((r) => r === 'PONG', () => false));
    if (this.tcp) this.jugglitePort = await freePort();
    for (let i = 0; i < this.sockets.length; ++i) await this.startJugglite(i);
    if (!this.tcp) await this.startNginx();
  }

  // Six redis-servers in cluster mode, joined by redis-cli --cluster create; ready once
  // every node says cluster_state:ok and every replica has synced (one that never did
  // would refuse to fail over).
  async startCluster() {
    this.clusterPorts = [];
    for (let i = 0; i < 6; ++i) {
      const port = await freeClusterPort();
      const dir = path.join(this.dir, `redis-${port}`);
      fs.mkdirSync(dir);
      this.procs[`redis-${port}`] = this.#spawn(`redis-${port}`, 'redis-server', ['--port', String(port),
        '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--cluster-enabled', 'yes',
        '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '1500', '--repl-diskless-sync-delay', '0']);
      this.clusterPorts.push(port);
    }
    this.redisPort = this.clusterPorts[0];
    for (const port of this.clusterPorts) {
      await waitFor('a cluster node', () => canConnect({ host: '127.0.0.1', port }));
    }
    execFileSync('redis-cli', ['--cluster', 'create', ...this.clusterPorts.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas', '1', '--cluster-yes'], { stdio: 'ignore', timeout: 60000 });
    await waitFor('the cluster', () => this.clusterHealthy(), 30000);
  }

  clusterHealthy() {
    try {
      return this.clusterPorts.every((port) => {
        const cli = (...a) => execFileSync('redis-cli', ['-p', String(port), ...a], { encoding: 'utf8' });
        if (!cli('CLUSTER', 'INFO').includes('cluster_state:ok')) return false;
        const repl = cli('INFO', 'replication');
        return !repl.includes('role:slave') || repl.includes('master_link_status:up');
      });
    } catch {
      return false;
    }
  }

  // The port of the master serving `channel`'s slot, as the first live node sees it.
  clusterMasterOf(channel) {
    for (const port of this.clusterPorts) {
      if (this.procs[`redis-${port}`].exitCode !== null || this.procs[`redis-${port}`].signalCode !== null) continue;
      const cli = (...a) => execFileSync('redis-cli', ['-p', String(port), ...a], { encoding: 'utf8' }).trim();
      const slot = Number(cli('CLUSTER', 'KEYSLOT', channel));
      for (const line of cli('CLUSTER', 'NODES').split('\n')) {
        const f = line.split(' ');
        if (!f[2].includes('master') || f[2].includes('fail')) continue;
        for (const r of f.slice(8)) {
          const [lo, hi = lo] = r.split('-').map(Number);
          if (slot >= lo && slot <= hi) return Number(f[1].split(':')[1].split('@')[0]);
        }
      }
      return undefined;
    }
    return undefined;
  }

  // Kills the cluster node at `port` (SIGKILL).
  async killRedis(port) {
    const p = this.procs[`redis-${port}`];
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  // Node `i` (jugglite, jugglite-1, ...).
  static #name(i) { return i === 0 ? 'jugglite' : `jugglite-${i}`; }

  async startJugglite(i = 0) {
    const socket = this.sockets[i];
    try { fs.unlinkSync(socket); } catch {}
    const listen = this.tcp ? ['--address', '127.0.0.1', '--port', String(this.jugglitePort)]
      : ['--socket', socket];
    const redis = this.cluster
      ? ['--redis-cluster', this.clusterPorts.slice(0, 3).map((p) => `redis://127.0.0.1:${p}`).join(',')]
      : ['--redis', `redis://127.0.0.1:${this.redisPort}`];
    this.procs[Stack.#name(i)] = this.#spawn(Stack.#name(i), jugglite, [...listen,
      ...redis, '--keepalive', String(this.keepalive),
      '--shards', '2', '--node-name', `node-${i}`, ...this.args]);
    await waitFor('jugglite', () => canConnect(this.tcp
      ? { host: '127.0.0.1', port: this.jugglitePort } : { path: socket }));
  }

  async killJugglite(i = 0, signal = 'SIGKILL') {
    const p = this.procs[Stack.#name(i)];
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await exited;
  }

  // A metric from node `i`'s /metrics (on its unix socket): the sum of the samples named
  // `name` over their labels, or undefined when there is none.
  metric(i, name) {
    return new Promise((resolve, reject) => {
      const req = http.get({ socketPath: this.sockets[i], path: '/metrics' }, (res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => {
          const samples = body.split('\n')
            .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
          resolve(samples.length === 0 ? undefined
            : samples.reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0));
        });
      });
      req.on('error', reject);
    });
  }

  async startNginx() {
    this.port = await freePort();
    const pageDir = path.join(this.dir, 'www');
    fs.mkdirSync(pageDir);
    fs.copyFileSync(path.join(here, 'page/index.html'), path.join(pageDir, 'index.html'));
    fs.chmodSync(pageDir, 0o755);
    fs.chmodSync(path.join(pageDir, 'index.html'), 0o644);
    // The shipped config, pointed at this test's socket, port and page directory.
    const site = fs.readFileSync(path.join(root, 'deploy/nginx/jugglite.conf'), 'utf8')
      .replace('server unix:/run/jugglite/jugglite.sock;',
        this.sockets.map((s) => `server unix:${s};`).join('\n    '))
      .replace('listen 80;', `listen 127.0.0.1:${this.port};`)
      .replace('root /var/www/app;', `root ${pageDir};`)
      .replace('access_log /var/log/nginx/access.log jugglite;', `access_log ${this.dir}/access.log jugglite;`);
    for (const expected of [...this.sockets, `127.0.0.1:${this.port}`, pageDir, `${this.dir}/access.log`]) {
      if (!site.includes(expected)) throw new Error(`deploy/nginx/jugglite.conf changed shape: ${expected}`);
    }
    const d = this.dir;
    const conf = `worker_processes 1;
daemon off;
pid ${d}/nginx.pid;
error_log ${d}/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  include /etc/nginx/mime.types;
  client_body_temp_path ${d}/body; proxy_temp_path ${d}/proxy; fastcgi_temp_path ${d}/fastcgi;
  uwsgi_temp_path ${d}/uwsgi; scgi_temp_path ${d}/scgi;
${site}
}
`;
    fs.writeFileSync(path.join(d, 'nginx.conf'), conf);
    this.procs.nginx = this.#spawn('nginx', 'nginx', ['-c', path.join(d, 'nginx.conf'), '-p', d]);
    await waitFor('nginx', () => canConnect({ host: '127.0.0.1', port: this.port }));
    this.base = `http://127.0.0.1:${this.port}`;
  }

  // One Redis command through redis-cli; returns its output, trimmed. On a cluster, sent
  // to the node serving the command's key (or channel).
  async redis(...args) {
    const port = this.cluster && args.length > 1 ? this.clusterMasterOf(args[1]) ?? this.redisPort : this.redisPort;
    return execFileSync('redis-cli', ['-p', String(port), ...args], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  }

  // FCALL jugglite_publish (--history) on the channel's node; the entry id.
  async fcall(channel, payload) {
    const port = this.cluster ? this.clusterMasterOf(channel) ?? this.redisPort : this.redisPort;
    return execFileSync('redis-cli', ['-p', String(port), 'FCALL', 'jugglite_publish', '1', channel, payload], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  }

  // PUBLISH, or on a cluster SPUBLISH on the channel's master.
  publish(channel, payload) { return this.redis(this.cluster ? 'SPUBLISH' : 'PUBLISH', channel, payload); }

  async waitSubscribed(channel, count = 1) {
    const subscribers = () => {
      if (!this.cluster) return this.redis('PUBSUB', 'NUMSUB', channel);
      const port = this.clusterMasterOf(channel);
      return execFileSync('redis-cli', ['-p', String(port), 'PUBSUB', 'SHARDNUMSUB', channel], {
        encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    };
    await waitFor(`${count} subscriber(s) on ${channel}`, async () => {
      try {
        return (await subscribers()).split('\n')[1] === String(count);
      } catch {
        return false;  // a node down
      }
    });
  }

  // GET `target` on node `i`'s socket: its status.
  status(i, target) {
    return new Promise((resolve) => {
      const req = http.get({ socketPath: this.sockets[i], path: target }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', () => resolve(undefined));
    });
  }

  async stop() {
    const nodes = this.sockets.map((_, i) => Stack.#name(i));
    const redis = this.cluster ? this.clusterPorts.map((p) => `redis-${p}`) : ['redis'];
    for (const name of ['nginx', ...nodes, ...redis]) {
      const p = this.procs[name];
      if (!p || p.exitCode !== null || p.signalCode !== null) continue;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill(name === 'nginx' ? 'SIGQUIT' : 'SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  #spawn(name, cmd, args) {
    const log = fs.openSync(path.join(this.dir, `${name}.log`), 'a');
    const p = spawn(cmd, args, { stdio: ['ignore', log, log] });
    p.on('error', (e) => { throw new Error(`${name}: ${e.message}`); });
    return p;
  }

  log(name) {
    try { return fs.readFileSync(path.join(this.dir, `${name}.log`), 'utf8'); } catch { return ''; }
  }
}

// A raw HTTP/1.1 client: sends a GET and collects the bytes with their arrival times.
export function rawStream(port, target) {
  const chunks = [];
  const sock = net.connect({ host: '127.0.0.1', port }, () => {
    sock.write(`GET ${target} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n`);
  });
  sock.on('data', (d) => chunks.push({ at: Date.now(), text: d.toString('latin1') }));
  sock.on('error', () => {});
  return {
    text: () => chunks.map((c) => c.text).join(''),
    // When `needle` first appeared (ms since epoch), or undefined.
    arrival(needle) {
      let acc = '';
      for (const c of chunks) {
        acc += c.text;
        if (acc.includes(needle)) return c.at;
      }
      return undefined;
    },
    close: () => sock.destroy(),
  };
}

// Debian's headless Chromium, started as the machine's closed network needs (no background
// networking, no component updates).
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// A Chromium page of the application on `channel`, once its EventSource is open and
// jugglite has subscribed the channel.
export async function openPage(stack, browser, channel) {
  const page = await browser.newPage();
  await page.goto(`${stack.base}/?channel=${channel}`);
  await waitFor('EventSource open', () => page.evaluate(() => window.opens >= 1));
  await stack.waitSubscribed(channel);
  return page;
}

// Which of the stack's two nodes holds `total` streams (the page's).
export async function nodeOf(stack, total = 1) {
  const open = await Promise.all([0, 1].map((i) => stack.metric(i, 'jugglite_connections_open').catch(() => 0)));
  const i = open.findIndex((n) => n >= total);
  if (i === -1) throw new Error(`no node holds the stream: ${open}`);
  return i;
}
