// The application side of the cross-origin e2e tests, on an origin of its own: it serves
// the test page and the pinned client libraries from node_modules, and answers jugglite's
// auth callback from a `session` cookie, as a Rails app would. It records every callback.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript' };

export class App {
  constructor() {
    this.callbacks = [];  // { uri, cookie, channels } of each auth callback
  }

  listen() {
    this.server = http.createServer((req, res) => this.#handle(req, res));
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => {
      this.port = this.server.address().port;
      this.origin = `http://127.0.0.1:${this.port}`;
      resolve();
    }));
  }

  close() { return new Promise((r) => this.server.close(r)); }

  #handle(req, res) {
    const url = new URL(req.url, this.origin);
    if (url.pathname === '/auth') {
      this.callbacks.push({ uri: req.headers['x-original-uri'], cookie: req.headers.cookie ?? '',
        channels: req.headers['x-jugglite-channels'] });
      const user = /(?:^|;\s*)session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
      if (!user) { res.writeHead(401).end('{}'); return; }
      res.writeHead(200, { 'Content-Type': 'application/json' })
        .end(JSON.stringify({ channels: [`user_${user}`, 'public*'], sub: user }));
      return;
    }
    // /page.html, and /nm/<package path> from node_modules; an ES module's import of
    // './fetch' (no extension, as TypeScript emits it) is served fetch.js.
    let file = url.pathname === '/page.html' ? path.join(here, 'page/clients.html')
      : url.pathname.startsWith('/nm/') ? path.join(here, 'node_modules', url.pathname.slice(4)) : null;
    if (file && !fs.existsSync(file) && fs.existsSync(`${file}.js`)) file = `${file}.js`;
    if (!file || !file.startsWith(here) || !fs.existsSync(file)) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'Content-Type': types[path.extname(file)] ?? 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  }
}
