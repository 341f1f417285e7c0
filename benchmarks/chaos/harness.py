"""Real parts for the chaos and soak drivers (and benchmarks/delivery_defects.py): a
redis-server, the jugglite binary, loadgen in watch mode (the streams), a tagging
publisher, and /proc samples.

Everything runs on loopback ports picked free, in a temporary directory, and is stopped
when the driver exits."""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = tempfile.mkdtemp(prefix="jugglite-chaos-")
_procs = []


def stop_all():
    """Kills every process started so far (a scenario's end: none may load the next)."""
    while _procs:
        kill_group(_procs.pop())


def _cleanup():
    stop_all()
    shutil.rmtree(WORK, ignore_errors=True)


atexit.register(_cleanup)


def kill_group(p):
    """Kills `p` and its process group (a loadgen's workers with it), stopped or not."""
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except OSError:
            pass
    p.wait()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(argv, log, **kw):
    """Starts argv in its own process group (so a whole loadgen can be stopped)."""
    out = kw.pop("stdout", None) or open(os.path.join(WORK, log), "ab")
    err = open(os.path.join(WORK, "loadgen.err"), "ab") if log is None else subprocess.STDOUT
    p = subprocess.Popen(argv, stdout=out, stderr=err, start_new_session=True, **kw)
    _procs.append(p)
    return p


def wait_for(pred, timeout, step=0.05):
    """Polls pred until it is true; returns the seconds it took, or None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if pred():
            return time.monotonic() - start
        time.sleep(step)
    return None


def resp(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
    return b"".join(out)


class Redis:
    """A redis-server on a free port (or `port`); `extra` are more of its arguments (ACL
    users...)."""

    def __init__(self, extra=(), port=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(dir=WORK)
        self.extra = list(extra)
        self.proc = None
        self.start()

    def start(self):
        self.proc = spawn(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--dir", self.dir, *self.extra],
                          f"redis-{self.port}.log")
        if wait_for(lambda: self.ping(), 10) is None:
            raise RuntimeError("redis-server did not start")

    def ping(self):
        try:
            return self.cmd("PING") == "PONG"
        except OSError:
            return False

    def cmd(self, *args, timeout=2):
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(resp(*args))
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("redis closed")
                data += chunk
            line = data.split(b"\r\n", 1)[0].decode()
            return line[1:]

    def cli(self, *args):
        """redis-cli's answer to a command, stripped (multi-line answers whole)."""
        return subprocess.run(["redis-cli", "-p", str(self.port), *map(str, args)],
                              capture_output=True, text=True, timeout=10).stdout.strip()

    def info(self, field):
        """A field of INFO (e.g. pubsub_channels), as a string."""
        for line in self.cli("INFO").splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
        return None

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def freeze(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


class Jugglite:
    """A jugglite on a free port against `redis` (None: the flags name it). `binary` defaults
    to the Release build; `redis_url` to `redis` without credentials; `nofile` runs it under
    that RLIMIT_NOFILE. It waits until /readyz is 200, or with ready=False only until the
    port answers."""

    def __init__(self, redis, *flags, shards=2, binary=None, redis_url=None, nofile=None,
                 ready=True):
        self.port = free_port()
        self.binary = binary or os.path.join(ROOT, "build/release/jugglite")
        # Without `redis`, the flags say where Redis is (--redis-cluster).
        where = [] if redis is None else ["--redis", redis_url or f"redis://127.0.0.1:{redis.port}"]
        argv = [self.binary, "--port", str(self.port), "--address", "127.0.0.1", *where,
                "--shards", str(shards), *map(str, flags)]
        if nofile:
            argv = ["prlimit", f"--nofile={nofile}:{nofile}", *argv]
        self.proc = spawn(argv, f"jugglite-{self.port}.log")
        up = (lambda: self.status("/readyz") == 200) if ready else (lambda: self.status("/livez") is not None)
        if wait_for(up, 15) is None:
            raise RuntimeError(f"jugglite did not come up:\n{self.log()}")

    def log(self):
        with open(os.path.join(WORK, f"jugglite-{self.port}.log")) as f:
            return f.read()

    def get(self, path, timeout=3):
        """The whole answer to GET `path`, or "" when the connection fails."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return ""
        return data.decode(errors="replace")

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def status(self, path):
        """The status code of GET `path`, or None without an answer."""
        try:
            return int(self.get(path).split("\r\n", 1)[0].split()[1])
        except (IndexError, ValueError):
            return None

    def stream(self, channels):
        """A raw socket that has asked for a stream of `channels`."""
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall(f"GET /stream?channel={channels} HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        return s

    def stop(self):
        kill_group(self.proc)

    def metrics(self):
        """name -> value, summed over labels, plus every labelled series under its full name."""
        out = {}
        try:
            body = self.get("/metrics").split("\r\n\r\n", 1)[1]
        except IndexError:
            return out
        for line in body.splitlines():
            if not line or line.startswith("#"):
                continue
            series, value = line.rsplit(" ", 1)
            v = float(value)
            out[series] = v
            name = series.split("{", 1)[0]
            if name != series:
                out[name] = out.get(name, 0) + v
        return out

    def rss(self):
        return proc_rss(self.proc.pid)

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


def proc_rss(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def slab_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1]) * 1024
    return 0


class Watcher:
    """loadgen --duration: N streams; its JSON status lines, one a second."""

    def __init__(self, port, conns, duration, path="/stream?channel=chaos", workers=2,
                 sources=8, ramp=20000, extra=()):
        self.conns = conns
        self.last = {}
        self.history = []  # (monotonic time, status) of every status line
        self.proc = spawn([os.path.join(ROOT, "build/release/benchmarks/loadgen"), "--port", str(port),
                           "--conns", str(conns), "--workers", str(workers), "--sources", str(sources),
                           "--ramp", str(ramp), "--path", path, "--duration", str(duration),
                           "--hold", "0", *map(str, extra)],
                          None, stdout=subprocess.PIPE)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                status = json.loads(line)
            except ValueError:
                continue
            if "t" in status:  # a status line (the line before them gives the failure reasons)
                self.last = status
                self.history.append((time.monotonic(), status))

    def wait_connected(self, timeout=60):
        if wait_for(lambda: self.last.get("connected", 0) + self.last.get("failed", 0) >= self.conns,
                    timeout) is None:
            raise RuntimeError(f"streams did not connect: {self.last}")
        return self.last["connected"]

    def tag(self, t):
        return self.last.get("tags", {}).get(str(t), {"frames": 0, "p50_ms": 0, "p99_ms": 0, "max_ms": 0})

    def stop_reading(self):
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume_reading(self):
        os.killpg(self.proc.pid, signal.SIGCONT)

    def end(self):
        kill_group(self.proc)


_seq_lock = threading.Lock()
_next_seq = 0


def next_seq():
    """Sequence numbers shared by every Publisher: loadgen takes a repeated number on one
    stream for a duplicate, so two publishers a stream hears must never reuse one."""
    global _next_seq
    with _seq_lock:
        _next_seq += 1
        return _next_seq


class Publisher:
    """PUBLISHes "<seq> <tag> <monotonic ns>" payloads at a rate from a thread, counting per
    tag the messages Redis handed to at least one subscriber (jugglite's link): those every
    open stream must get. Reconnects by itself while Redis is down."""

    def __init__(self, redis, channel="chaos", rate=20, size=64):
        self.redis, self.channel, self.rate, self.size = redis, channel, rate, size
        self.tag = 0
        self.sent = {}
        self.delivered_to_jugglite = {}
        self.unsubscribed = {}
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _connect(self):
        s = socket.create_connection(("127.0.0.1", self.redis.port), timeout=1)
        s.settimeout(None)
        return s

    def _run(self):
        sock, pending, buf = None, [], b""
        lock = threading.Lock()
        next_t = time.monotonic()
        reader = None

        def read_replies(s):
            nonlocal buf
            while True:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    with lock:
                        tag = pending.pop(0) if pending else None
                    if tag is None:
                        continue
                    if line.startswith(b":") and int(line[1:]) > 0:
                        self.delivered_to_jugglite[tag] = self.delivered_to_jugglite.get(tag, 0) + 1
                    else:
                        self.unsubscribed[tag] = self.unsubscribed.get(tag, 0) + 1

        while not self._stop:
            if sock is None:
                try:
                    sock = self._connect()
                    buf = b""
                    with lock:
                        pending.clear()
                    reader = threading.Thread(target=read_replies, args=(sock,), daemon=True)
                    reader.start()
                except OSError:
                    time.sleep(0.2)
                    next_t = time.monotonic()
                    continue
            next_t += 1.0 / self.rate
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            tag = self.tag
            channel = self.channel() if callable(self.channel) else self.channel
            payload = f"{next_seq()} {tag} {time.monotonic_ns()} "
            payload += "x" * max(0, self.size - len(payload))
            try:
                with lock:
                    pending.append(tag)
                sock.sendall(resp("PUBLISH", channel, payload))
                self.sent[tag] = self.sent.get(tag, 0) + 1
            except OSError:
                sock.close()
                sock = None
        if sock:
            time.sleep(0.5)  # the last replies
            sock.close()

    def stop(self):
        self._stop = True
        self._thread.join()

    def expected(self, tag):
        return self.delivered_to_jugglite.get(tag, 0)


class Report:
    """Collects each scenario's figures and verdicts; prints them and writes markdown."""

    def __init__(self):
        self.sections = []
        self.failed = []

    def section(self, title, condition):
        self.sections.append({"title": title, "condition": condition, "rows": [], "checks": []})
        print(f"\n=== {title}\npass condition: {condition}", flush=True)

    def figure(self, name, value):
        self.sections[-1]["rows"].append((name, value))
        print(f"  {name}: {value}", flush=True)

    def check(self, name, ok):
        self.sections[-1]["checks"].append((name, ok))
        print(f"  [{'pass' if ok else 'FAIL'}] {name}", flush=True)
        if not ok:
            self.failed.append(f"{self.sections[-1]['title']}: {name}")

    def markdown(self, header):
        lines = [header, ""]
        for s in self.sections:
            lines += [f"## {s['title']}", "", f"Pass condition: {s['condition']}", "",
                      "| figure | value |", "|---|---|"]
            lines += [f"| {n} | {v} |" for n, v in s["rows"]]
            lines += [""] + [f"- {'pass' if ok else 'FAIL'}: {n}" for n, ok in s["checks"]] + [""]
        return "\n".join(lines)
