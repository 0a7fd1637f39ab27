"""Reliability harness: careful MQTT devices with exact accounting, the daemon
under test (restartable on a fixed port), Kafka read-back and reconciliation.

Every message carries "R|<client>|<seq>|<qos>|<conn>|" in its payload, so each
record in Kafka names the device, the message and the connection that sent
that copy. Reconciliation is exact; see reconcile() for the rules.
"""
import collections
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import m2k  # noqa: E402
from m2k import connect, publish, pubrel, enc_len  # noqa: E402,F401
from confluent_kafka import Consumer, TopicPartition, KafkaError, KafkaException  # noqa: E402

KAFKA_TOPIC = "rel"
DISCONNECT = b"\xe0\x00"
PINGREQ = b"\xc0\x00"
KEEPALIVE_S = 30


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------
# The daemon: one config, one port, several incarnations (restarts).

class PortInUse(Exception):
    pass


class Daemon:
    def __init__(self, workdir, build_dir, bootstrap, overrides=None):
        self.workdir = workdir
        self.binary = os.path.join(build_dir, "mqtt2kafka")
        assert os.path.exists(self.binary), f"{self.binary} not built"
        self.port = m2k.free_port()
        self.config = m2k.merge(m2k.base_config(self.port, bootstrap), {
            "topics": [{"mqtt": "rel/#", "kafka": KAFKA_TOPIC}],
            "headers": False,
            "mqtt": {"max_connections": 1200, "max_inflight": 64, "session_expiry_s": 600,
                     "connect_timeout_s": 10},
        })
        self.config = m2k.merge(self.config, overrides)
        self.config_path = os.path.join(workdir, "mqtt2kafka.yaml")
        import yaml
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self.config, f, sort_keys=False)
        self.incarnation = 0
        self.fd_exclude = None
        self.proc = None
        self.exits = []  # exit status of each incarnation
        self.hwm_kb = 0
        self.logs = []
        self._mon = None

    # -- lifecycle
    def _write_config(self):
        import yaml
        self.config["listeners"] = [{"listen": f"127.0.0.1:{self.port}"}]
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self.config, f, sort_keys=False)

    def start(self, timeout=20.0):
        """Starts a daemon process. The port picked at random can be taken by
        another process (other tests, ephemeral ports of many clients) before
        the daemon binds it: the first start then moves to a new port; a
        restart retries its port (clients reconnect to it)."""
        for attempt in range(20):
            try:
                return self._start(timeout)
            except PortInUse:
                if self.incarnation == 1 and attempt < 5:
                    self.incarnation = 0
                    self.logs.pop()
                    self.port = m2k.free_port()
                    self._write_config()
                else:
                    self.incarnation -= 1
                    self.logs.pop()
                    time.sleep(0.25)
        raise RuntimeError(f"daemon could not bind 127.0.0.1:{self.port}")

    def _start(self, timeout):
        self.incarnation += 1
        log_path = os.path.join(self.workdir, f"daemon.{self.incarnation}.log")
        self.logs.append(log_path)
        self._logf = open(log_path, "wb")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.proc = subprocess.Popen([self.binary, "-c", self.config_path],
                                     stdout=self._logf, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._logf.close()
                if "address already in use" in self.log():
                    raise PortInUse()
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            if f"listening on 127.0.0.1:{self.port}" in self.log():
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"daemon did not listen on {self.port}:\n{self.log()}")
        self._stop_mon = threading.Event()
        self._mon = threading.Thread(target=self._monitor, args=(self.proc, self._stop_mon),
                                     daemon=True)
        self._mon.start()

    def _monitor(self, proc, stop):
        while not stop.wait(0.25):
            self.sample_hwm(proc)

    def sample_hwm(self, proc=None):
        proc = proc or self.proc
        st = proc_status(proc.pid)
        if st:
            self.hwm_kb = max(self.hwm_kb, st.get("VmHWM", 0))
        return st

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=60.0):
        """Sends sig and waits; returns the exit status (negative = signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.sample_hwm()
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.exits.append(f"hung after {signal.Signals(sig).name}, killed")
                self._finish()
                return None
        self.exits.append(self.proc.returncode)
        self._finish()
        return self.proc.returncode

    def _finish(self):
        self._stop_mon.set()
        self._logf.close()

    def log(self, which=-1):
        with open(self.logs[which], "rb") as f:
            return f.read().decode(errors="replace")

    def all_logs(self):
        return "\n".join(self.log(i) for i in range(len(self.logs)))

    def sanitizer_reports(self):
        return [l for l in self.all_logs().splitlines()
                if ("Sanitizer" in l and "ERROR" in l) or "runtime error:" in l]

    # -- /proc
    def fds(self, broker_ports=()):
        """(MQTT connection sockets, other sockets, non-socket fds) of the daemon."""
        return fd_census(self.proc.pid, self.port, broker_ports, self.fd_exclude)


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS"):
                    out[k] = int(v.split()[0])
    except OSError:
        return None
    return out


def _tcp_table():
    """inode -> (local port, remote port, state) for every TCP socket."""
    t = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    p = line.split()
                    lport = int(p[1].rsplit(":", 1)[1], 16)
                    rport = int(p[2].rsplit(":", 1)[1], 16)
                    t[int(p[9])] = (lport, rport, p[3])
        except OSError:
            pass
    return t


def fd_census(pid, mqtt_port, broker_ports=(), exclude=None):
    """(MQTT connection sockets, other sockets, non-socket fds). An MQTT
    connection the daemon failed to close stays in /proc/net/tcp (CLOSE_WAIT)
    with our port, so it is counted. Other sockets (listeners, librdkafka's
    broker connections, which come and go with broker faults) are reported
    only. Files under `exclude` (the spool's segments, open as they come and
    go) are not counted."""
    tcp = _tcp_table()
    mqtt = sockets = other = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            e = tcp.get(int(target[8:-1]))
            if e and e[0] == mqtt_port and e[2] != "0A":  # 0A = LISTEN
                mqtt += 1
            else:
                sockets += 1
            continue
        if exclude and target.startswith(exclude):
            continue
        other += 1
    return mqtt, sockets, other


# --------------------------------------------------------------------------
# A careful device: clean session 0, keeps every message until acked, resends
# after reconnecting (PUBLISH with DUP for ids without PUBREC, PUBREL for ids
# with PUBREC).

class Msg:
    __slots__ = ("seq", "qos", "pid", "state", "acked", "sends", "incs")

    def __init__(self, seq, qos):
        self.seq, self.qos = seq, qos
        self.pid = 0
        self.state = "new"   # sent -> rec (QoS 2) -> done
        self.acked = False   # PUBACK (QoS 1) or PUBREC (QoS 2) seen
        self.sends = 0       # PUBLISH copies sent
        self.incs = set()    # daemon incarnations a PUBLISH copy went to


class Device(threading.Thread):
    def __init__(self, h, cid, qos, rate, window=16, pad=64):
        super().__init__(daemon=True, name=cid)
        self.h, self.cid, self.qos = h, cid, qos
        self.topic = f"rel/{cid}"
        self.rate, self.window = rate, window
        self.pad = b"x" * pad
        self.msgs = []
        self.pending = collections.OrderedDict()  # pid -> Msg, in send order
        self.sock = None
        self.conn_no = 0
        self.inc = 0
        self.stop_new = threading.Event()
        self.abort = threading.Event()
        self.kill_next_pubrec = threading.Event()  # die between PUBREC and PUBREL
        self.connects = self.lost_conns = self.session_present = 0
        self.error = None
        self.done = threading.Event()
        self._next_pid = 1
        self._buf = b""
        self._lock = threading.Lock()

    # -- wire
    def _send(self, data):
        self.sock.sendall(data)

    def _connect(self):
        s = socket.create_connection(("127.0.0.1", self.h.daemon.port), timeout=3)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        inc = self.h.daemon.incarnation
        s.sendall(connect(self.cid, clean=False, keepalive=KEEPALIVE_S))
        buf = b""
        deadline = time.monotonic() + 5
        while len(buf) < 4:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(4 - len(buf))
            if not chunk:
                raise ConnectionError("closed before CONNACK")
            buf += chunk
        if buf[0] != 0x20 or buf[3] != 0:
            raise ConnectionError(f"CONNACK {buf.hex()}")
        s.settimeout(None)
        s.setblocking(False)
        self.sock, self.inc, self._buf = s, inc, b""
        self.last_out = time.monotonic()
        self.conn_no += 1
        self.connects += 1
        self.session_present += buf[2] & 1
        # Resend everything unacknowledged, in the original order.
        out = bytearray()
        for m in self.pending.values():
            out += self._publish_bytes(m, dup=True) if m.state == "sent" else pubrel(m.pid)
        if out:
            self._sendall_blocking(bytes(out))

    def _sendall_blocking(self, data):
        self.last_out = time.monotonic()
        self.sock.setblocking(True)
        self.sock.settimeout(5)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def _publish_bytes(self, m, dup=False):
        m.sends += 1
        m.incs.add(self.inc)
        payload = f"R|{self.cid}|{m.seq}|{m.qos}|{self.conn_no}|".encode() + self.pad
        return publish(self.topic, payload, qos=m.qos, pid=m.pid if m.qos else None, dup=dup)

    def _alloc_pid(self):
        for _ in range(65535):
            pid = self._next_pid
            self._next_pid = pid % 65535 + 1
            if pid not in self.pending:
                return pid
        raise RuntimeError("no free packet id")

    def _drop_conn(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def _packets(self):
        """Whole packets from the socket buffer."""
        while True:
            b = self._buf
            if len(b) < 2:
                return
            n, mul, i = 0, 1, 1
            while True:
                if i >= len(b):
                    return
                n += (b[i] & 0x7F) * mul
                mul *= 128
                i += 1
                if not b[i - 1] & 0x80:
                    break
            if len(b) < i + n:
                return
            pkt, self._buf = b[:i + n], b[i + n:]
            yield pkt[0], pkt[i:]

    def _handle(self, first, body):
        t = first >> 4
        if t in (4, 5, 7):
            pid = int.from_bytes(body[:2], "big")
            m = self.pending.get(pid)
            if m is None:
                # A PUBCOMP for an id resent as PUBREL after we already completed it
                # cannot happen (we keep it until PUBCOMP); anything else is a bug.
                raise AssertionError(f"{self.cid}: ack type {t} for unknown id {pid}")
            if t == 4 and m.qos == 1:
                m.acked, m.state = True, "done"
                del self.pending[pid]
            elif t == 5 and m.qos == 2:
                m.acked = True
                if m.state == "sent":
                    m.state = "rec"
                if self.kill_next_pubrec.is_set():
                    self.kill_next_pubrec.clear()
                    raise ConnectionAbortedError("killed between PUBREC and PUBREL")
                self._send(pubrel(pid))
            elif t == 7 and m.qos == 2 and m.state == "rec":
                m.state = "done"
                del self.pending[pid]
            else:
                raise AssertionError(f"{self.cid}: ack type {t} for QoS {m.qos} id {pid} "
                                     f"in state {m.state}")
        elif t == 13:
            pass
        else:
            raise AssertionError(f"{self.cid}: unexpected packet {first:#x}")

    def run(self):
        try:
            self._run()
        except Exception as e:  # reported by the harness
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self._drop_conn()
            self.done.set()

    def _run(self):
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.abort.is_set():
            if self.sock is None:
                if self.stop_new.is_set() and not self.pending:
                    return
                if self.h.hold.is_set():  # the harness wants us offline for now
                    time.sleep(0.05)
                    continue
                try:
                    self._connect()
                except (OSError, ConnectionError):
                    self._drop_conn()
                    time.sleep(0.1)
                    continue
            try:
                now = time.monotonic()
                out = bytearray()
                while (not self.stop_new.is_set() and not self.h.pause.is_set()
                       and now >= next_at and len(self.pending) < self.window):
                    m = Msg(len(self.msgs), self.qos)
                    self.msgs.append(m)
                    if self.qos:
                        m.pid = self._alloc_pid()
                        m.state = "sent"
                        self.pending[m.pid] = m
                    out += self._publish_bytes(m)
                    next_at += interval
                if now > next_at + 1.0:
                    next_at = now  # do not burst after a stall
                if not out and now - self.last_out >= KEEPALIVE_S / 3:
                    out += PINGREQ  # a full window while Kafka stalls: keep alive
                if out:
                    self._sendall_blocking(bytes(out))
                if self.stop_new.is_set() and not self.pending:
                    self.sock.setblocking(True)
                    self.sock.settimeout(2)
                    self.sock.sendall(DISCONNECT)
                    self._drop_conn()
                    return
                r, _, _ = select.select([self.sock], [], [], min(0.05, max(0.0, next_at - now)))
                if r:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        raise ConnectionResetError("closed by the daemon")
                    self._buf += chunk
                    for first, body in self._packets():
                        self._handle(first, body)
            except (OSError, ConnectionError):
                self.lost_conns += 1
                self._drop_conn()
                time.sleep(0.05)


# --------------------------------------------------------------------------
# Connection churn: N clients connect, some publish nothing, all leave.

class Churn(threading.Thread):
    def __init__(self, h, n=1000):
        super().__init__(daemon=True, name="churn")
        self.h, self.n = h, n
        self.stop = threading.Event()
        self.cycles = self.connacks = self.failures = 0
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():
                self._cycle()
                self.cycles += 1
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"

    def _cycle(self):
        socks = []
        try:
            for i in range(self.n):
                if self.stop.is_set():
                    break
                try:
                    s = socket.create_connection(("127.0.0.1", self.h.daemon.port), timeout=3)
                except OSError:
                    self.failures += 1
                    continue
                # Half clean session 0 (the daemon keeps their sessions), half 1.
                try:
                    s.sendall(connect(f"churn-{i}", clean=bool(i % 2), keepalive=30))
                except OSError:
                    self.failures += 1
                    s.close()
                    continue
                socks.append(s)
            for s in socks:
                try:
                    s.settimeout(5)
                    if s.recv(4)[:1] == b"\x20":
                        self.connacks += 1
                    else:
                        self.failures += 1
                except OSError:
                    self.failures += 1
        finally:
            for j, s in enumerate(socks):
                try:
                    if j % 3 == 0:
                        s.sendall(DISCONNECT)
                    elif j % 3 == 1:  # abort: RST
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                except OSError:
                    pass
                s.close()


# --------------------------------------------------------------------------
# Reading back and reconciling

# librdkafka 2.0.2's mock cluster keeps at most 5 MiB (or 100000 batches) per
# partition and drops the oldest batches beyond that (rdkafka_mock.c,
# rd_kafka_mock_partition_init: max_size, max_cnt; no setter): a soak writes
# far more, so records read only after the run are gone and the log start
# offset is no longer 0. The reader therefore consumes while the devices
# publish, from offset 0 on, and must see every offset of every partition.
MOCK_RETAINED_BYTES = 5 * 1024 * 1024


class Reader(threading.Thread):
    """Tails every partition of `topic` from offset 0 while the run goes on.
    finish() reads up to the high watermarks and returns every record as
    (partition, offset, key, value). Nothing is skipped silently: a
    fetch offset the mock no longer has is an error (auto.offset.reset
    'error'), and the offsets read must be exactly 0..high-1 per partition."""

    def __init__(self, bootstrap, topic):
        super().__init__(daemon=True, name="reader")
        self.bootstrap, self.topic = bootstrap, topic
        self.records = []
        self.seen = {}      # partition -> next offset expected
        self.high = None    # partition -> high watermark, set once finishing
        self.low = {}       # partition -> log start offset at the end
        self.error = None
        self._final = threading.Event()
        self._quit = threading.Event()
        self._ready = threading.Event()
        self.start()
        if not self._ready.wait(30) or self.error:
            raise AssertionError(f"reader did not start: {self.error}")

    def run(self):
        c = None
        try:
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "m2k-rel",
                          "enable.auto.commit": False, "enable.partition.eof": False,
                          "auto.offset.reset": "error", "fetch.wait.max.ms": 100,
                          # Back to a broker that was down within 1 s (the
                          # default backoff grows to 10 s), so the final
                          # read does not wait for it.
                          "reconnect.backoff.max.ms": 1000,
                          # Connection failures during injected broker faults
                          # are expected; real failures arrive as message errors.
                          "log_level": 2})
            parts = self._partitions(c)
            self.seen = {p: 0 for p in parts}
            c.assign([TopicPartition(self.topic, p, 0) for p in parts])
            self._ready.set()
            while not self._quit.is_set():
                if self._final.is_set() and self.high is None:
                    self.high, self.low = {}, {}
                    for p in parts:
                        lo, hi = c.get_watermark_offsets(TopicPartition(self.topic, p),
                                                         timeout=10)
                        self.low[p], self.high[p] = lo, hi
                if self.high is not None and all(self.seen[p] >= self.high[p] for p in parts):
                    return
                for m in c.consume(num_messages=10000, timeout=0.2):
                    e = m.error()
                    if e is None:
                        self._take(m)
                    elif e.code() in (KafkaError._AUTO_OFFSET_RESET,
                                      KafkaError.OFFSET_OUT_OF_RANGE):
                        raise AssertionError(
                            f"partition {m.partition()}: {e.str()}: the records from offset "
                            f"{self.seen.get(m.partition())} on were dropped by the mock "
                            f"({MOCK_RETAINED_BYTES} bytes kept per partition) before the "
                            f"reader got them")
                    # Other errors (broker down, transport) are the injected
                    # faults; the consumer retries by itself.
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self._ready.set()
            if c is not None:
                c.close()

    def _partitions(self, c):
        deadline = time.monotonic() + 30
        last = None
        while time.monotonic() < deadline:
            try:
                t = c.list_topics(self.topic, timeout=5).topics.get(self.topic)
                if t is not None and t.error is None and t.partitions:
                    return sorted(t.partitions)
                last = t.error if t is not None else "topic not in the metadata"
            except KafkaException as e:  # retried until the deadline, then reported
                last = e
            time.sleep(0.2)
        raise AssertionError(f"no metadata for topic {self.topic}: {last}")

    def _take(self, m):
        p, off = m.partition(), m.offset()
        if off != self.seen[p]:
            raise AssertionError(f"partition {p}: offset {off} read after {self.seen[p] - 1}")
        self.seen[p] = off + 1
        self.records.append((p, off, m.key(), m.value(), m.timestamp()[1]))

    def finish(self, timeout=None):
        """Call once the producer (the daemon) has stopped: reads up to the
        high watermarks, bounded by `timeout` (default: 60 s plus 1 ms per
        record not yet read)."""
        self._final.set()
        deadline = time.monotonic() + 60
        while self.high is None and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.high is not None:
            left = sum(max(0, self.high[p] - self.seen[p]) for p in self.high)
            self.join(timeout if timeout is not None else 60 + left / 1000.0)
        self._quit.set()
        self.join(30)
        if self.error:
            raise AssertionError(f"read-back failed: {self.error}")
        if self.high is None or any(self.seen[p] < self.high[p] for p in self.high):
            raise AssertionError(f"read-back incomplete: {self.seen} of {self.high}")
        # Offsets of one partition are contiguous in the mock (no compaction,
        # no transactions) and were read in order from 0 (_take checks it):
        # the count is the proof that nothing was skipped.
        n = collections.Counter(r[0] for r in self.records)
        bad = {p: (n[p], self.high[p]) for p in self.high if n[p] != self.high[p]}
        if bad:
            raise AssertionError(f"read-back has records != high watermark: {bad}")
        return self.records


# librdkafka's debug line for each Produce request (debug context "msg").
PRODUCE_RE = re.compile(
    r"(?P<topic>\S+) \[(?P<part>\d+)\]: Produce MessageSet with (?P<n>\d+) message\(s\) "
    r"\(\d+ bytes, ApiVersion \d+, MsgVersion \d+, MsgId (?P<msgid>\d+), BaseSeq "
    r"(?P<seq>-?\d+), PID\{Id:(?P<pid>\d+),Epoch:(?P<epoch>\d+)\}")


def resent_batches(log_text, topic=KAFKA_TOPIC):
    """Produce requests librdkafka sent more than once, from its debug log:
    {partition: [(msgid, count), ...]}, one entry per resend. A resend is a
    request for the same partition with the same producer id, epoch, base
    sequence, first message id and message count as an earlier one: an
    idempotent retry after a request whose response never came (a broker
    connection closed, a timeout). Kafka writes such a batch once (it answers
    a retry of one of the last five batches as a duplicate); librdkafka
    2.0.2's mock cluster checks sequences only for transactional producers
    (rd_kafka_mock_validate_records returns at once without a
    TransactionalId) and appends it again."""
    first, resent = {}, collections.defaultdict(list)
    for m in PRODUCE_RE.finditer(log_text):
        if m["topic"] != topic:
            continue
        part, n, msgid = int(m["part"]), int(m["n"]), int(m["msgid"])
        k = (part, m["pid"], m["epoch"], m["seq"])
        if k not in first:
            first[k] = (msgid, n)
        elif first[k] == (msgid, n):
            resent[part].append((msgid, n))
    return resent


def mock_reappends(records, resent):
    """Indexes into `records` of the second copies that the mock appended for
    a resent batch (see resent_batches). A run of repeated records counts only
    when all of this holds: the copies sit at consecutive offsets of one
    partition; their first copies also sit at consecutive offsets, in the same
    order, with the same create timestamps; and the run is exactly as long as
    a series of resent batches of that partition with adjacent message ids
    (each resend used once). Anything else stays a duplicate for reconcile to
    judge."""
    left = {p: sorted(v) for p, v in resent.items()}
    out = set()
    for part, runs in repeated_runs(records).items():
        for run in runs:
            if _take_batches(left.get(part, []), len(run)):
                out.update(run)
    return out


def _device(value):
    """The device (client id) a record's value names; None for a foreign one."""
    parts = value.split(b"|", 2)
    return parts[1] if len(parts) > 2 and parts[0] == b"R" else None


def repeated_runs(records, skip=(), by_device=False):
    """{partition: [[index into records, ...], ...]}: the runs of second
    copies of records (same value and create timestamp) that sit at
    consecutive offsets and whose first copies sit at consecutive offsets too,
    in the same order. Records whose index is in `skip` are left out. With
    by_device, keyed by (partition, device) and "consecutive" among that
    device's records of the partition: a device lives on one worker, whose
    spool replays the device's records in order, while the other workers'
    replays into the same partition may come between them."""
    by_part = collections.defaultdict(list)
    for i, r in enumerate(records):
        if i in skip:
            continue
        key = (r[0], _device(r[3])) if by_device else r[0]
        # A copy of the same batch has the same create timestamp; a record
        # produced twice by the daemon would not (read back: 5-tuples).
        by_part[key].append((r[1], i, (r[3], r[4] if len(r) > 4 else None)))
    out = {}
    for part, recs in by_part.items():
        recs.sort()
        first, runs = {}, []
        for pos, (off, i, value) in enumerate(recs):
            if value not in first:
                first[value] = pos
                continue
            if runs and runs[-1][-1][0] == pos - 1 and first[value] == runs[-1][-1][1] + 1:
                runs[-1].append((pos, first[value], i))
            else:
                runs.append([(pos, first[value], i)])
        out[part] = [[i for _, _, i in run] for run in runs]
    return out


def spool_replays(records, restarts, skip=()):
    """Indexes into `records` of the copies a restarted daemon sent again
    from its spool: the records Kafka had taken after the spool's last
    checkpoint (docs/semantics.md, "The spool"). The spool keeps each
    record's timestamp, and a restart sends the unconfirmed tail again in
    spool order before anything new, so for each device (it lives on one
    worker, whose spool holds its records in order) a restart repeats one
    run of its records in its partition (repeated_runs, by device). At most
    `restarts` runs per device count (the longest); anything else stays a
    duplicate for reconcile to judge."""
    out = set()
    for runs in repeated_runs(records, skip, by_device=True).values():
        for run in sorted(runs, key=len, reverse=True)[:restarts]:
            out.update(run)
    return out


def _take_batches(batches, n):
    """Removes from `batches` a series with adjacent message ids whose counts
    add up to exactly n; True if there was one."""
    for a in range(len(batches)):
        total, b = 0, a
        while b < len(batches) and total < n:
            if b > a and batches[b][0] != batches[b - 1][0] + batches[b - 1][1]:
                break
            total += batches[b][1]
            b += 1
        if total == n:
            del batches[a:b]
            return True
    return False


def reconcile(devices, records, resent=None, spool_restarts=0):
    """Exact accounting. Rules (each violation is listed in `violations`):
    - lost: a QoS 1/2 message the device saw acked (PUBACK/PUBREC) that is not
      in Kafka. Must be 0.
    - phantom: a record no device sent. Must be 0.
    - excess: a message in Kafka more often than allowed: QoS 0/1 at most once
      per PUBLISH copy sent; QoS 2 at most once per daemon incarnation that
      received a copy (QoS 2 state does not survive a restart). Must be 0.
    - unacked: a QoS 1/2 message never acked by the end. Must be 0 (every
      scenario heals its fault and the devices resend until acked).
    - order: records of one device (one MQTT topic, one key) are all in one
      partition; the copies one connection sent are in Kafka in the order sent
      (seq strictly increasing, none twice); copies sent by a later connection
      come after those of earlier connections.
    With the spool, `spool_restarts` daemon restarts and rewinds of the
    spool's feed may each send one run of each device's records again
    (spool_replays); those are counted (spool_replayed) and left out of the
    rules above.
    """
    reappended = mock_reappends(records, resent) if resent else set()
    replayed = spool_replays(records, spool_restarts, reappended) if spool_restarts else set()
    records = [r for i, r in enumerate(records) if i not in reappended and i not in replayed]
    by_cid = {d.cid: d for d in devices}
    count = collections.Counter()
    phantom = 0
    per_dev = collections.defaultdict(list)  # cid -> [(partition, offset, seq, conn)]
    for part, off, key, value, *_ in records:
        try:
            tag, cid, seq, qos, conn = value.split(b"|", 5)[:5]
            cid = cid.decode()
            seq, qos, conn = int(seq), int(qos), int(conn)
            d = by_cid.get(cid)
            ok = tag == b"R" and d is not None and seq < len(d.msgs) and d.msgs[seq].qos == qos \
                and key == d.topic.encode()
        except ValueError:
            ok = False
        if not ok:
            phantom += 1
            continue
        count[(cid, seq)] += 1
        per_dev[cid].append((part, off, seq, conn))

    r = dict(sent=0, sent_q=[0, 0, 0], acked=0, in_kafka=0, records=len(records),
             dup_q1=0, dup_q2=0, lost=0, excess=0, unacked=0, phantom=phantom,
             qos0_missing=0, order=0, mock_reappended=len(reappended),
             spool_replayed=len(replayed), violations=[])
    v = r["violations"]
    if phantom:
        v.append(f"{phantom} records in Kafka that no device sent")
    for d in devices:
        for m in d.msgs:
            n = count[(d.cid, m.seq)]
            r["sent"] += 1
            r["sent_q"][m.qos] += 1
            r["acked"] += m.acked
            r["in_kafka"] += n > 0
            if m.qos == 1 and n > 1:
                r["dup_q1"] += n - 1
            if m.qos == 2 and n > 1:
                r["dup_q2"] += n - 1
            if m.qos == 0 and n == 0:
                r["qos0_missing"] += 1
                if r["qos0_missing"] <= 3:
                    r.setdefault("qos0_missing_ids", []).append(f"{d.cid}:{m.seq}")
            if m.acked and n == 0:
                r["lost"] += 1
                if r["lost"] <= 10:
                    v.append(f"LOST {d.cid} seq {m.seq} QoS {m.qos} (acked, not in Kafka)")
            if m.qos and not m.acked:
                r["unacked"] += 1
                if r["unacked"] <= 5:
                    v.append(f"never acked: {d.cid} seq {m.seq} QoS {m.qos} state {m.state}")
            limit = len(m.incs) if m.qos == 2 else m.sends
            if n > limit:
                r["excess"] += 1
                if r["excess"] <= 10:
                    v.append(f"{d.cid} seq {m.seq} QoS {m.qos} in Kafka {n} times; "
                             f"{m.sends} copies sent to {len(m.incs)} daemon incarnation(s)")
        recs = per_dev.get(d.cid, [])
        parts = {p for p, _, _, _ in recs}
        if len(parts) > 1:
            r["order"] += 1
            v.append(f"{d.cid}: records in partitions {sorted(parts)}")
        last_seq, last_conn = {}, 0
        for p, off, seq, conn in recs:
            if conn < last_conn:
                r["order"] += 1
                v.append(f"{d.cid}: offset {off} seq {seq} from connection {conn} after "
                         f"connection {last_conn}")
            last_conn = max(last_conn, conn)
            if seq <= last_seq.get(conn, -1):
                r["order"] += 1
                v.append(f"{d.cid}: connection {conn}: seq {seq} at offset {off} after "
                         f"seq {last_seq[conn]}")
            last_seq[conn] = max(seq, last_seq.get(conn, -1))
    return r
