"""threads: 2 (docs/architecture.md, "Workers"): two event loops, each with
its own listening socket (SO_REUSEPORT), sessions and producer. The kernel
spreads connections by their source port; a client id lives on the worker
its keyed hash names, so a connection whose CONNECT landed on the other one
is handed over before anything else happens. Which worker accepted a
connection is read from mqtt2kafka_worker_connections_accepted_total."""
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

import m2k
from m2k import Raw, connect, publish, puback, pubrec, pubrel, pubcomp
from test_metrics import http_get, scrape
from test_mqtt5 import connect5
from test_tls import pki  # noqa: F401 (a fixture)
from test_websocket import frame, server_frame, switching, upgrade_request

THREADS = {"threads": 2, "metrics": {"listen": "127.0.0.1:0"}}


def start(daemon, **over):
    d = daemon(m2k.merge(THREADS, over))
    m = d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, /healthz, "
                            r"/readyz\)", level="info", regex=True), since=0)
    return d, int(m.group(1))


def accepted(mport):
    s = scrape(mport)
    return [int(s[f'mqtt2kafka_worker_connections_accepted_total{{worker="{i}"}}'])
            for i in range(2)]


def serving(mport):
    s = scrape(mport)
    return [int(s[f'mqtt2kafka_worker_connections{{worker="{i}"}}']) for i in range(2)]


def open_on(d, mport, worker, keep):
    """A raw connection (no CONNECT yet) that worker `worker` accepted; the
    ones that landed on the other worker go to `keep` (closed by the test)."""
    for _ in range(40):
        before = accepted(mport)
        c = Raw(d.port)
        m2k.wait_until(lambda: sum(accepted(mport)) == sum(before) + 1, 10,
                       "the connection counted by a worker")
        after = accepted(mport)
        if after[worker] == before[worker] + 1:
            return c
        keep.append(c)
    raise AssertionError(f"40 connections, none accepted by worker {worker}")


def test_check_accepts_threads_with_the_spool(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  bootstrap_servers: embedded\n"
                   f"spool:\n  dir: {tmp_path}/spool\n"
                   "threads: 2\n")
    r = subprocess.run([m2k.DAEMON, "--check", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")


def test_auto_with_the_spool_is_every_cpu(daemon, tmp_path):
    d = daemon({"threads": 0, "spool": {"dir": str(tmp_path / "spool")}})
    n = min(len(os.sched_getaffinity(0)), 16)
    d.wait_log(m2k.line(f"threads: {n} (auto)", level="info"), since=0)  # a start-up line


def test_default_is_one_worker_per_cpu(daemon):
    """No threads: in the file: one worker per CPU the process may use, at
    most 16, and the start line says so."""
    if os.environ.get("M2K_THREADS"):
        pytest.skip("M2K_THREADS sets threads:")
    n = min(len(os.sched_getaffinity(0)), 16)
    d = daemon({})
    d.wait_log(m2k.line(f"threads: {n} (auto)", level="info"), since=0)


def test_connections_spread_and_every_record_in_kafka(daemon, mock_kafka):
    """40 connections: both workers accept some; each publishes 5 QoS 1
    messages under its own key; every acked record is in Kafka, in order
    per connection, and the summed metrics count exactly."""
    d, mport = start(daemon)
    n, per = 40, 5
    conns = []
    for i in range(n):
        c = Raw(d.port)
        c.connect(f"spread{i}")
        conns.append(c)
    for p in range(1, per + 1):
        for i, c in enumerate(conns):
            c.send(publish(f"sensors/c{i}/temperature", f"c{i}-{p}".encode(), qos=1, pid=p))
    for c in conns:
        for p in range(1, per + 1):
            c.expect(puback(p), timeout=15)
    acc = accepted(mport)
    assert sum(acc) == n and min(acc) > 0, acc
    assert sum(serving(mport)) == n
    assert min(serving(mport)) > 0
    recs = m2k.assert_records(mock_kafka.bootstrap, "temperature", n * per)
    by_key = {}
    for r in recs:
        by_key.setdefault(r.key.decode(), []).append(r.value.decode())
    for i in range(n):
        assert by_key[f"c{i}"] == [f"c{i}-{p}" for p in range(1, per + 1)]
    s = scrape(mport)
    assert s['mqtt2kafka_messages_received_total{qos="1"}'] == n * per
    assert s["mqtt2kafka_kafka_records_delivered_total"] == n * per
    assert s["mqtt2kafka_connections"] == n
    assert s["mqtt2kafka_connections_total"] == n
    for c in conns:
        c.close()


def where(mport, open_conn):
    """(the worker that accepted, the worker that serves) a connection that
    open_conn() opens and CONNECTs (nothing else may connect meanwhile)."""
    a0, s0 = accepted(mport), serving(mport)
    c = open_conn()
    a1, s1 = accepted(mport), serving(mport)
    acc = [i for i in range(2) if a1[i] == a0[i] + 1]
    srv = [i for i in range(2) if s1[i] == s0[i] + 1]
    assert len(acc) == 1 and len(srv) == 1, (a0, a1, s0, s1)
    return c, acc[0], srv[0]


def served_on_both(d, mport, prefix, **kw):
    """Connected clients until each worker serves one: [(raw, id, worker)]."""
    out, seen = [], set()
    for i in range(40):
        cid = f"{prefix}{i}"
        c, _, w = where(mport, lambda: Raw(d.port).connect(cid, **kw))
        out.append((c, cid, w))
        seen.add(w)
        if seen == {0, 1}:
            return out
    raise AssertionError("40 client ids, all on one worker")


def test_takeover_of_a_client_id_first_seen_on_the_other_worker(daemon, mock_kafka):
    """The first connection is accepted by one worker, the second by the
    other; the same client id lives on one of them, so one connection was
    handed over: the second CONNECT closes the first, session present 1."""
    d, mport = start(daemon)
    keep = []
    c1 = open_on(d, mport, 0, keep)
    c2 = open_on(d, mport, 1, keep)
    c1.connect("twice", clean=False)
    c1.send(publish("test/t", b"one", qos=1, pid=1))
    c1.expect(puback(1))
    c2.connect("twice", clean=False, session_present=True)
    c1.expect_close()
    c2.send(publish("test/t", b"two", qos=1, pid=2))
    c2.expect(puback(2))
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 2)
    assert [r.value for r in recs] == [b"one", b"two"]
    m2k.wait_until(lambda: sum(serving(mport)) == 1 + len(keep), 10, "the first one closed")
    for c in keep + [c2]:
        c.close()


def test_persistent_qos2_resumed_through_the_other_worker(daemon, mock_kafka):
    """A QoS 2 PUBLISH acked with PUBREC on a connection one worker accepted;
    the client reconnects through the other worker's socket: PUBREL gets
    PUBCOMP from the kept session and the record is in Kafka once."""
    d, mport = start(daemon)
    keep = []
    c1 = open_on(d, mport, 0, keep)
    c1.connect("q2", clean=False)
    c1.send(publish("test/q2", b"exactly once", qos=2, pid=7))
    c1.expect(pubrec(7))
    c1.close()
    c2 = open_on(d, mport, 1, keep)
    c2.connect("q2", clean=False, session_present=True)
    c2.send(pubrel(7))
    c2.expect(pubcomp(7))
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert [r.value for r in recs] == [b"exactly once"]
    for c in keep + [c2]:
        c.close()


def test_assigned_client_id_lives_on_its_worker(daemon):
    """MQTT 5, an empty client id and a session expiry: the id the server
    assigns is one the accepting worker owns, so a reconnect with it
    (wherever the kernel puts the connection) finds the session: session
    present 1, eight times (with a random id, half would not)."""
    d, mport = start(daemon)
    expiry = b"\x11\x00\x00\x01\x2c"  # session expiry interval 300 s
    for i in range(8):
        c = Raw(d.port)
        c.send(connect5("", props=expiry))  # clean start 1: a zero-byte id needs it
        ack = c.recv_packet()
        assert ack[:4] == b"\x20" + bytes([len(ack) - 2]) + b"\x00\x00", ack.hex(" ")
        cid = re.search(rb"\x12\x00\x29(m2k-auto-[0-9a-f]{32})", ack).group(1).decode()
        c.close()
        again = Raw(d.port)
        again.send(connect5(cid, props=expiry, flags=0x00))
        ack = again.recv_packet()
        assert ack[2:4] == b"\x01\x00", (i, cid, ack.hex(" "))  # session present
        again.close()


def test_persistent_session_bounds_hold_for_the_process(daemon):
    """mqtt.max_persistent_sessions 2 with two workers: each worker keeps
    its share, 1, so six persistent sessions leave one kept per worker that
    served any (two workers each keeping 2 would keep more: 6 ids cannot
    put at most one on each)."""
    d, mport = start(daemon, mqtt={"max_persistent_sessions": 2})
    conns, per = [], [0, 0]
    for i in range(6):
        c, _, w = where(mport, lambda: Raw(d.port).connect(f"keep{i}", clean=False))
        per[w] += 1
        conns.append(c)
    for c in conns:
        c.send(b"\xe0\x00")  # DISCONNECT: the session is kept, within the bound
        c.close()
    m2k.wait_until(lambda: serving(mport) == [0, 0], 10, "every client gone")
    kept = sum(min(n, 1) for n in per)
    s = scrape(mport)
    assert (s["mqtt2kafka_persistent_sessions"],
            s['mqtt2kafka_sessions_evicted_total{bound="max_persistent_sessions"}']) == \
        (kept, 6 - kept), per


def test_wills_on_both_workers(daemon, mock_kafka):
    """A will is published when its connection drops, whichever worker
    accepted it and whichever serves its client id."""
    d, mport = start(daemon)
    keep = []
    wills = []
    for w in (0, 1):
        c = open_on(d, mport, w, keep)
        c.connect(f"mortal{w}", will=("test/will", f"gone{w}", 1, False))
        wills.append(c)
    for c in wills:
        c.close()  # no DISCONNECT
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 2)
    assert sorted(r.value for r in recs) == [b"gone0", b"gone1"]
    for c in keep:
        c.close()


def test_sighup_changes_the_topic_map_on_both_workers(daemon, mock_kafka):
    d, mport = start(daemon)
    clients = served_on_both(d, mport, "hup")
    for i, (c, _, _) in enumerate(clients):
        c.send(publish("test/x", b"before", qos=1, pid=1))
        c.expect(puback(1))
    m2k.assert_records(mock_kafka.bootstrap, "test", len(clients))
    topics = [{"mqtt": "test/#", "kafka": "after"}]
    d.rewrite_config({"topics": topics})
    mark = d.mark()
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(m2k.line("reload: configuration applied (1 topic rules, unmapped disconnect, log "
                        "level info)", level="info"), since=mark)
    for c, cid, _ in clients:
        c.send(publish("test/x", cid.encode(), qos=1, pid=2))
        c.expect(puback(2))
    recs = m2k.assert_records(mock_kafka.bootstrap, "after", len(clients))
    assert sorted(r.value for r in recs) == sorted(cid.encode() for _, cid, _ in clients)
    assert scrape(mport)["mqtt2kafka_config_reloads_total"] == 1
    for c, _, _ in clients:
        c.close()


def test_sigterm_drains_both_workers(daemon, mock_kafka):
    """SIGTERM while QoS 1 records of connections on both workers wait for a
    slow broker: every PUBACK comes before the close, every acked record is
    in Kafka, the process exits 0."""
    d, mport = start(daemon)
    clients = served_on_both(d, mport, "term")
    for c, _, _ in clients:  # metadata and broker connections up on both producers
        c.send(publish("test/warm", b"w", qos=1, pid=100))
        c.expect(puback(100), timeout=15)
    mock_kafka.cmd("rtt -1 500")
    n = 10
    for c, cid, _ in clients:
        c.send(b"".join(publish("test/term", f"{cid}-{i}", qos=1, pid=i)
                        for i in range(1, n + 1)))
    key = "mqtt2kafka_kafka_records_produced_total"
    total = len(clients) * (n + 1)
    m2k.wait_until(lambda: scrape(mport)[key] == total, 10, f"{key} {total}")
    mark = d.mark()
    d.proc.send_signal(signal.SIGTERM)
    for c, _, _ in clients:
        c.expect_close(b"".join(puback(i) for i in range(1, n + 1)), timeout=30)
    assert d.stop(timeout=30) == 0
    d.wait_log(m2k.line(r"Terminated: stopping intake; waiting up to 10 s for \d+ messages in "
                        r"flight to Kafka", level="info", regex=True), since=mark)
    # One line for both workers, once both are done.
    d.wait_log(m2k.line(f"shutdown: {total} records produced, {total} delivered, 0 failed; "
                        f"closing {len(clients)} connections", level="info"), since=mark)
    mock_kafka.cmd("rtt -1 0")
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", total)
    for _, cid, _ in clients:
        assert [r.value for r in recs if r.value.startswith(f"{cid}-".encode())] == \
            [f"{cid}-{i}".encode() for i in range(1, n + 1)]


def moved_connection(mport, open_conn, tries=40):
    """open_conn(i) until one connection is served by another worker than
    the one that accepted it: (its index, the connection)."""
    for i in range(tries):
        c, acc, srv = where(mport, lambda: open_conn(i))
        if acc != srv:
            return i, c
        c.close()
    raise AssertionError(f"{tries} connections, none handed over")


def test_tls_connection_moved_between_workers(daemon, mock_kafka, pki):  # noqa: F811
    """A TLS connection whose CONNECT and first PUBLISH came in one write
    lands on the worker that does not own its client id: its TLS session
    moves (the PUBLISH's record may still be in it) and it publishes."""
    tls = {"cert": pki.server[0], "key": pki.server[1]}
    d, mport = start(daemon, listeners=[{"listen": "127.0.0.1:0"},
                                        {"listen": "127.0.0.1:0", "tls": tls}])
    m = d.wait_log(m2k.line(r"listening on 127\.0\.0\.1:(\d+) \(TLS\)", level="info",
                            regex=True), since=0)
    tls_port = int(m.group(1))
    ctx = ssl.create_default_context(cafile=pki.ca[0])

    def open_conn(i):
        c = Raw.__new__(Raw)
        c.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls_port), timeout=5),
                                 server_hostname="127.0.0.1")
        c.send(connect(f"tls{i}") + publish("test/tls", f"tls{i}", qos=1, pid=1))
        c.expect(m2k.CONNACK_OK + puback(1))
        return c

    i, c = moved_connection(mport, open_conn)
    c.send(publish("test/tls", b"after", qos=1, pid=2))
    c.expect(puback(2))
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", i + 2)
    assert [r.value for r in recs if r.headers == m2k.expected_headers("test/tls", f"tls{i}", 1)] \
        == [f"tls{i}".encode(), b"after"]
    c.close()


def test_tls_identity_kept_through_a_move(daemon, mock_kafka, pki, tmp_path):  # noqa: F811
    """use_identity_as_username: a connection handed to the other worker
    keeps the certificate's CN as its user name there (the ACL allows only
    device-17; the CONNECT names someone else)."""
    acl = tmp_path / "acl"
    acl.write_text("user device-17\ntopic write test/device-17/#\n")
    tls = {"cert": pki.server[0], "key": pki.server[1], "ca": pki.ca[0],
           "require_client_cert": True, "use_identity_as_username": True}
    d, mport = start(daemon, listeners=[{"listen": "127.0.0.1:0"},
                                        {"listen": "127.0.0.1:0", "tls": tls}],
                     auth={"acl_file": str(acl), "allow_anonymous": False})
    m = d.wait_log(m2k.line(r"listening on 127\.0\.0\.1:(\d+) \(TLS\)", level="info",
                            regex=True), since=0)
    tls_port = int(m.group(1))
    ctx = ssl.create_default_context(cafile=pki.ca[0])
    ctx.load_cert_chain(pki.client[0], pki.client[1])

    def open_conn(i):
        c = Raw.__new__(Raw)
        c.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls_port), timeout=5),
                                 server_hostname="127.0.0.1")
        c.send(connect(f"cn{i}", username="someone-else", password="x"))
        c.expect(m2k.CONNACK_OK)
        return c

    i, c = moved_connection(mport, open_conn)
    c.send(publish("test/device-17/t", b"by-cn", qos=1, pid=1))
    c.expect(puback(1))
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert (recs[0].value, recs[0].headers) == (
        b"by-cn", m2k.expected_headers("test/device-17/t", f"cn{i}", 1, username="device-17"))
    c.close()


def test_websocket_connection_moved_between_workers(daemon, mock_kafka):
    ws = {"listen": "127.0.0.1:0", "websocket": {"path": "/mqtt"}}
    d, mport = start(daemon, listeners=[{"listen": "127.0.0.1:0"}, ws])
    m = d.wait_log(m2k.line(r"listening on 127\.0\.0\.1:(\d+) \(WebSocket\)", level="info",
                            regex=True), since=0)
    ws_port = int(m.group(1))

    def open_conn(i):
        c = Raw(ws_port)
        c.send(upgrade_request())
        c.expect(switching())
        # The PUBLISH's frame in the same write: decoded after the move.
        c.send(frame(connect(f"ws{i}")) + frame(publish("test/ws", f"ws{i}", qos=1, pid=1)))
        c.expect(server_frame(m2k.CONNACK_OK) + server_frame(puback(1)))
        return c

    i, c = moved_connection(mport, open_conn)
    c.send(frame(publish("test/ws", b"over ws", qos=1, pid=2)))
    c.expect(server_frame(puback(2)))
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", i + 2)
    assert [r.value for r in recs if r.headers == m2k.expected_headers("test/ws", f"ws{i}", 1)] \
        == [f"ws{i}".encode(), b"over ws"]
    c.close()


def test_connect_in_two_reads_with_a_publish_after_it_moved(daemon, mock_kafka):
    """A CONNECT whose first bytes came in an earlier read, its rest in the
    same write as a PUBLISH, on a connection handed to the other worker: the
    PUBLISH goes along (it was dropped: the connection, closing here, took
    only the buffered CONNECT, so the client never got its PUBACK)."""
    d, mport = start(daemon)

    def open_conn(i):
        c = Raw(d.port)
        pkt = connect(f"split{i}")
        c.send(pkt[:3])
        m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_input_buffer_bytes"] == 256, 10,
                       "the CONNECT's first 3 bytes buffered")
        c.send(pkt[3:] + publish("test/split", f"split{i}", qos=1, pid=1))
        c.expect(m2k.CONNACK_OK + puback(1))
        return c

    i, c = moved_connection(mport, open_conn)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", i + 1)
    assert sorted(r.value for r in recs) == sorted(f"split{j}".encode() for j in range(i + 1))
    c.close()


def test_first_packets_that_name_no_worker(daemon, mock_kafka):
    """A CONNECT over mqtt.max_packet_size is refused from its fixed header
    (not waited for to find its client id), a first packet that is not a
    CONNECT is refused as with one worker, and a CONNECT without a client id
    is served where it landed."""
    d, mport = start(daemon, mqtt={"max_packet_size": 1024})
    cl = Raw(d.port)
    mark = d.mark()
    cl.send(b"\x10" + m2k.enc_len(100000))
    cl.expect_close()
    d.wait_log(m2k.line("closing: MQTT_ERR_PACKET_TOO_LARGE CONNECT packet of 100004 bytes is "
                        "over max_packet_size 1024", level="warn", client="-"), since=mark)
    cl = Raw(d.port)
    mark = d.mark()
    cl.send(publish("test/a", "x"))
    cl.expect_close()
    d.wait_log(m2k.line("closing: first packet is PUBLISH, not CONNECT [MQTT-3.1.0-1]",
                        level="warn", client="-"), since=mark)
    for _ in range(4):
        c, acc, srv = where(mport, lambda: Raw(d.port).connect(""))
        assert acc == srv
        c.send(publish("test/anon", b"a", qos=1, pid=1))
        c.expect(puback(1))
        c.close()


def test_clients_page_in_accept_order_across_workers(daemon):
    """GET /clients merges the workers' lists oldest accept first: by the
    accept time (ns, kept through a hand-over), not by when a packet last
    began, nor by the worker on a tie of milliseconds. The first connection
    sends its CONNECT in two pieces after the others connected back to back
    (some on each worker, some handed over)."""
    d, mport = start(daemon)
    first = Raw(d.port)
    m2k.wait_until(lambda: sum(accepted(mport)) == 1, 10, "the first connection accepted")
    others = []
    while len(others) < 16:
        others += [Raw(d.port).connect(f"order-{len(others) + i}") for i in range(4)]
        if min(serving(mport)) >= 2:
            break
    assert min(serving(mport)) >= 2, serving(mport)
    pkt = connect("order-first")
    first.send(pkt[:3])
    time.sleep(0.05)  # two reads: the packet begins after the others connected
    first.send(pkt[3:])
    first.expect(m2k.CONNACK_OK)
    code, body = http_get(mport, "/clients")
    assert code == 200, body
    assert [c["client_id"] for c in json.loads(body)["clients"]] == \
        ["order-first"] + [f"order-{i}" for i in range(len(others))]
    for c in [first] + others:
        c.close()


def test_input_budget_closes_the_largest_partial_packet_of_any_worker(daemon):
    """mqtt.max_input_buffer_bytes counts both workers' partial packets; the
    worker whose append goes over asks the one holding the largest to close
    it: the big one on the other worker goes, the small one stays."""
    d, mport = start(daemon, mqtt={"max_input_buffer_bytes": 65536})
    clients = served_on_both(d, mport, "budget")
    big = next(c for c, _, w in clients if w == 0)
    small = next(c for c, _, w in clients if w == 1)
    big_id = next(cid for c, cid, w in clients if c is big)
    pa = publish("test/a", b"a" * 50000, qos=1, pid=1)
    pb = publish("test/b", b"b" * 100, qos=1, pid=2)
    big.send(pa[:40000])  # buffered in 65,536 bytes: the whole budget
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_input_buffer_bytes"] == 65536, 5,
                   "40,000 bytes buffered")
    mark = d.mark()
    small.send(pb[:10])  # 256 bytes more, on the other worker: over
    big.expect_close(b"")
    d.wait_log(m2k.line("closing: 65536 bytes of a partly received packet buffered, the most of "
                        "any connection, while all hold 65792, over mqtt.max_input_buffer_bytes "
                        "65536", level="warn", client=big_id), since=mark)
    small.send(pb[10:])
    small.expect(puback(2))
    s = scrape(mport)
    assert s['mqtt2kafka_input_closed_total{reason="input_budget"}'] == 1
    assert s["mqtt2kafka_input_buffer_bytes"] == 0
    for c, _, _ in clients:
        c.close()


def test_sigterm_while_the_start_waits_for_kafka(tmp_path):
    """Worker 0 alone exists during the start's wait for metadata (the
    others are made once it is over): a SIGTERM then stops it, exit 0."""
    dead = m2k.free_port()  # nothing listens there: every connect is refused
    d = m2k.Daemon(tmp_path, f"127.0.0.1:{dead}", THREADS, serving=False)
    try:
        m = d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, "
                                r"/healthz, /readyz\)", level="info", regex=True), since=0)
        mport = int(m.group(1))
        assert "no metadata from" not in d.log(), d.log()
        assert scrape(mport)["mqtt2kafka_connections"] == 0
    finally:
        rc = d.stop()
    assert rc == 0, d.log()
