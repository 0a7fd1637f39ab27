#!/usr/bin/python3
"""Fault-injection and soak suite for mqtt2kafka with exact accounting.

    /usr/bin/python3 tests/reliability/run.py --scenario all --duration 20
    /usr/bin/python3 tests/reliability/run.py --scenario soak --duration 600
    /usr/bin/python3 tests/reliability/run.py --build-dir build-asan --scenario all

    /usr/bin/python3 tests/reliability/run.py --kafka real --scenario all --duration 20

Each scenario starts a fresh mock Kafka cluster (or, with --kafka real, empties
a three-node Apache Kafka cluster started once for the run:
tests/kafka/kafka_cluster.py) and a daemon, runs careful
devices (QoS 0, 1 and 2; clean session 0; resend after reconnect) for
--duration seconds while one fault is injected and healed, lets the devices
drain (resend until acked), stops the daemon with SIGTERM and reconciles
every record in Kafka against what the devices sent and saw acknowledged
(rules in rel.reconcile). Exit status 0 only when every scenario passed.
"""
import argparse
import collections
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kafka"))
import rel  # noqa: E402
import m2k  # noqa: E402
import kafka_cluster  # noqa: E402

SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class Run:
    """One scenario: mock cluster, daemon, devices, checks."""

    def __init__(self, args, name, overrides=None, qos_list=(0, 1, 1, 2, 2), rate=None,
                 topic=None, spool=False):
        """`topic`: create_topic's arguments for the real cluster's topic (default 4
        partitions, replication factor 3). `spool`: the daemon runs with
        `spool: {mode: always}` in the scenario's directory and a metrics
        listener (finish waits for the spool to drain)."""
        self.args, self.name = args, name
        self.workdir = tempfile.mkdtemp(prefix=f"m2k-rel-{name}-", dir=args.workdir)
        self.spool = os.path.join(self.workdir, "spool") if spool else None
        self.restarts = 0
        if spool:
            self.metrics_port = m2k.free_port()
            overrides = m2k.merge(overrides or {}, {
                "spool": {"dir": self.spool, "mode": "always"},
                "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
                "kafka": {"properties": {"reconnect.backoff.max.ms": 500}}})
        if args.threads:
            overrides = m2k.merge(overrides or {}, {"threads": args.threads})
        if args.kafka == "real":
            # The cluster of the whole run, all nodes up, the topic new
            # (replication factor 3, min.insync.replicas 2).
            if len(args.cluster.alive_nodes()) < len(args.cluster.nodes):
                args.cluster.start()
            self.mock = args.cluster.admin
            self.mock.delete_user_topics()
            self.mock.create_topic(rel.KAFKA_TOPIC, **(topic or {"partitions": 4,
                                                                  "replication": 3}))
        else:
            self.mock = m2k.MockKafka()
            self.mock.cmd(f"create {rel.KAFKA_TOPIC} 4")
        self.broker_ports = {int(a.rsplit(":", 1)[1]) for a in self.mock.bootstrap.split(",")}
        # Reads while the devices publish: the mock drops old records (rel.Reader).
        self.reader = rel.Reader(self.mock.bootstrap, rel.KAFKA_TOPIC)
        if args.kafka_debug and args.kafka_debug != "none":
            overrides = m2k.merge(overrides or {}, {
                "kafka": {"properties": {"debug": args.kafka_debug}}, "log": {"level": "debug"}})
        self.daemon = rel.Daemon(self.workdir, args.build_dir, self.mock.bootstrap, overrides)
        if spool:
            self.daemon.fd_exclude = self.spool + "/"
        self.hold = threading.Event()
        self.pause = threading.Event()  # connected devices send nothing new while set
        self.prior_records = []  # read from a topic deleted during the run
        self.checks = []  # (ok, text): scenario-specific expectations
        self.extra = {}
        self.daemon.start()
        self.fd_start = self.daemon.fds(self.broker_ports)
        rate = rate or args.rate
        self.devices = [rel.Device(self, f"{name}-{i}-q{q}", q, rate) for i, q in
                        enumerate(qos_list)]
        for d in self.devices:
            d.start()

    def sleep(self, s):
        time.sleep(max(0.0, s))

    def check(self, ok, text):
        self.checks.append((bool(ok), text))

    def wait(self, pred, timeout, what):
        """m2k.wait_until as a check: True, or False with a violation naming
        `what` (the run goes on to its reconciliation)."""
        try:
            m2k.wait_until(pred, timeout, what)
            return True
        except AssertionError as e:
            self.check(False, str(e))
            return False

    def restart(self, sig):
        st = self.daemon.stop(sig)
        self.restarts += 1
        self.daemon.start()
        return st

    def spool_records(self):
        """The spool's mqtt2kafka_spool_records, or None when /metrics does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                        timeout=5) as resp:
                for line in resp.read().decode().splitlines():
                    if line.startswith("mqtt2kafka_spool_records "):
                        return int(float(line.split()[1]))
        except OSError:
            return None
        return None

    def finish(self):
        """Drain, stop, reconcile; returns the result row."""
        for d in self.devices:
            d.stop_new.set()
        self.hold.clear()
        deadline = time.monotonic() + self.args.drain_timeout
        for d in self.devices:
            d.done.wait(max(0.1, deadline - time.monotonic()))
        for d in self.devices:
            if not d.done.is_set():
                d.abort.set()
                self.check(False, f"{d.cid}: still {len(d.pending)} unacked after the "
                                  f"{self.args.drain_timeout} s drain")
                d.done.wait(5)
            if d.error:
                self.check(False, f"{d.cid}: {d.error}")
        alive = self.daemon.alive()
        self.check(alive, f"the daemon exited on its own: {self.daemon.proc.returncode}")
        if alive and self.spool:
            # Acked means in the spool: Kafka has it once the spool is empty.
            self.wait(lambda: self.spool_records() == 0, 60, "the spool to drain into Kafka")
        if alive:
            # Every MQTT connection is gone once the clients are (bounded wait).
            self.wait(lambda: self.daemon.fds(self.broker_ports)[0] == 0, 10,
                      "no MQTT sockets left in the daemon after every client left")
            fds = self.daemon.fds(self.broker_ports)
            self.check(fds[2] == self.fd_start[2],
                       f"daemon fds other than sockets: {self.fd_start[2]} at "
                       f"start, {fds[2]} at the end")
            self.extra["fds"] = f"{self.fd_start} -> {fds}"
        st = self.daemon.stop(signal.SIGTERM)
        self.check(st == 0, f"exit status after the final SIGTERM: {st}")
        t = time.monotonic()
        records = self.prior_records + self.reader.finish()
        self.mock.close()
        if self.prior_records:
            self.extra["read_back_deleted_topic"] = f"{len(self.prior_records)} records"
        self.extra["read_back"] = (f"{len(records)} records, offsets 0..high-1 of every "
                                   f"partition, high {self.reader.high}, log start at the end "
                                   f"{self.reader.low}, {time.monotonic() - t:.1f} s after "
                                   f"the last SIGTERM")
        # Batches librdkafka sent twice (its "msg" debug lines): the mock
        # appends them twice where Kafka would not (rel.resent_batches).
        # Not against real Kafka: there every second copy is a duplicate.
        resent = rel.resent_batches(self.daemon.all_logs()) if self.args.kafka == "mock" else {}
        self.extra["resent_batches"] = sum(len(v) for v in resent.values())
        # The spool's feed also sends again, after a record Kafka refused,
        # what Kafka took after it (a rewind; docs/semantics.md, "The
        # spool"): one run per partition, as a restart's replay.
        rewinds = self.daemon.all_logs().count("spool: the feed to Kafka starts again after")
        if self.spool:
            self.extra["spool_rewinds"] = rewinds
        # A device lives on one worker (threads: auto, the default: one per
        # CPU), whose spool replays the device's records in order after a
        # restart: one run per device and restart (rel.spool_replays), however
        # the workers' replays interleave in a partition.
        r = rel.reconcile(self.devices, records, resent,
                          self.restarts + rewinds if self.spool else 0)
        san = self.daemon.sanitizer_reports()
        for line in san[:5]:
            self.check(False, f"sanitizer: {line}")
        for ok, text in self.checks:
            if not ok:
                r["violations"].append(text)
        r.update(scenario=self.name, hwm_kb=self.daemon.hwm_kb, exits=self.daemon.exits,
                 lost_conns=sum(d.lost_conns for d in self.devices),
                 ok=not r["violations"] and r["lost"] == 0 and r["excess"] == 0
                 and r["phantom"] == 0 and r["unacked"] == 0 and r["order"] == 0,
                 extra=self.extra, workdir=self.workdir)
        return r


# --------------------------------------------------------------------------
# Scenarios: each gets a Run that is already publishing and the duration T.

def sc_broker_down(a):
    run = Run(a, "broker_down")
    T = a.duration
    run.sleep(T / 3)
    run.mock.cmd("down 1")
    run.sleep(T / 3)
    run.mock.cmd("up 1")
    run.sleep(T / 3)
    r = run.finish()
    run_expect_no_disconnect(r)
    return r


def run_expect_no_disconnect(r):
    # librdkafka retries these faults: clients see latency, never a close.
    if r["lost_conns"]:
        r["violations"].append(f"clients were disconnected {r['lost_conns']} times by a fault "
                               f"that must be invisible to them")
        r["ok"] = False


def sc_all_down(a):
    # message.timeout.ms 3 s; brokers down for 5 s: records time out, the
    # daemon closes the waiting clients unacknowledged, they resend.
    run = Run(a, "all_down", {"kafka": {"properties": {"message.timeout.ms": 3000}}})
    T = max(a.duration, 9)
    run.sleep(1.5)
    run.mock.cmd("down -1")
    run.sleep(5.0)
    run.mock.cmd("up -1")
    run.sleep(T - 6.5)
    r = run.finish()
    if not r["lost_conns"]:
        r["violations"].append("no client was disconnected although records timed out")
        r["ok"] = False
    return r


def sc_leader(a):
    run = Run(a, "leader_moved")
    T = a.duration
    steps = 6
    for i in range(steps):
        run.sleep(T / (steps + 1))
        for p in range(4):
            run.mock.cmd(f"leader {rel.KAFKA_TOPIC} {p} {(p + i) % 3 + 1}")
    run.sleep(T / (steps + 1))
    r = run.finish()
    run_expect_no_disconnect(r)
    return r


def sc_rtt(a):
    run = Run(a, "rtt_2s")
    T = max(a.duration, 6)
    run.sleep(T / 4)
    run.mock.cmd("rtt -1 2000")
    run.sleep(T / 2)
    run.mock.cmd("rtt -1 0")
    run.sleep(T / 4)
    r = run.finish()
    run_expect_no_disconnect(r)
    return r


def sc_retriable(a):
    # One request in flight per broker: librdkafka 2.0.2's mock cluster
    # appends a pipelined batch after an injected error on the batch before
    # it (a real broker answers OUT_OF_ORDER_SEQUENCE_NUMBER), and librdkafka
    # then reports the failed batch delivered ("implicitly acked by
    # subsequent batch success"): an acked record that is not in the log,
    # caused by the mock, not by the daemon. See docs/reliability.md.
    run = Run(a, "retriable_errors",
              {"kafka": {"properties": {"max.in.flight.requests.per.connection": 1}}})
    T = a.duration
    for err in ("NOT_LEADER_FOR_PARTITION", "REQUEST_TIMED_OUT", "_TRANSPORT"):
        run.sleep(T / 4)
        run.mock.cmd(f"push_errors Produce 8 {err}")
    run.sleep(T / 4)
    r = run.finish()
    run_expect_no_disconnect(r)
    return r


def _permanent(a, name, err):
    run = Run(a, name)
    T = a.duration
    run.sleep(T / 3)
    run.mock.cmd(f"push_errors Produce 64 {err}")
    run.sleep(T / 3)
    run.mock.cmd("clear_errors Produce")
    run.sleep(T / 3)
    r = run.finish()
    failed = run.daemon.all_logs().count("Kafka did not take a QoS")
    r["extra"]["delivery_failures_logged"] = failed
    if not failed or not r["lost_conns"]:
        r["violations"].append(f"{err}: expected failed deliveries and disconnects, got "
                               f"{failed} failures logged, {r['lost_conns']} disconnects")
        r["ok"] = False
    return r


def sc_topic_auth(a):
    return _permanent(a, "topic_authorization_failed", "TOPIC_AUTHORIZATION_FAILED")


def sc_msg_too_large(a):
    return _permanent(a, "msg_size_too_large", "MSG_SIZE_TOO_LARGE")


def sc_queue_full(a):
    run = Run(a, "queue_full", {"kafka": {"properties": {"queue.buffering.max.messages": 10}},
                                "log": {"level": "debug"}})
    T = max(a.duration, 6)
    run.sleep(T / 6)
    run.mock.cmd("rtt -1 500")
    run.sleep(T * 2 / 3)
    run.mock.cmd("rtt -1 0")
    run.sleep(T / 6)
    r = run.finish()
    n = run.daemon.all_logs().count("producer queue full")
    r["extra"]["queue_full_pauses"] = n
    if not n:
        r["violations"].append("the producer queue never filled")
        r["ok"] = False
    run_expect_no_disconnect(r)
    return r


def _signal(a, name, sig):
    run = Run(a, name)
    T = a.duration
    run.sleep(T / 2)
    st = run.restart(sig)
    want = 0 if sig == signal.SIGTERM else -sig
    run.check(st == want, f"exit status after {signal.Signals(sig).name} under load: {st}")
    run.sleep(T / 2)
    return run.finish()


def sc_sigterm(a):
    return _signal(a, "sigterm", signal.SIGTERM)


def sc_sigkill(a):
    return _signal(a, "sigkill", signal.SIGKILL)


def sc_client_kill(a):
    run = Run(a, "client_kill", qos_list=(1, 2, 2, 2, 2))
    T = a.duration
    q2 = [d for d in run.devices if d.qos == 2]
    # 1) Devices die between PUBREC and PUBREL; the daemon keeps their
    #    sessions (clean session 0) and they come back to it.
    run.sleep(T / 3)
    conns0 = [d.connects for d in q2]
    present0 = sum(d.session_present for d in q2)
    for d in q2:
        d.kill_next_pubrec.set()
    run.wait(lambda: all(d.connects > c for d, c in zip(q2, conns0)), 10,
             "every QoS 2 device to die between PUBREC and PUBREL and reconnect")
    present_before = sum(d.session_present for d in q2) - present0
    run.sleep(T / 3)
    # 2) Same, but they reconnect to a restarted daemon (sessions are gone).
    run.hold.set()
    for d in q2:
        d.kill_next_pubrec.set()
    run.wait(lambda: all(not d.kill_next_pubrec.is_set() for d in q2), 10,
             "every QoS 2 device to die between PUBREC and PUBREL")
    st = run.restart(signal.SIGTERM)
    run.check(st == 0, f"exit status after SIGTERM: {st}")
    run.hold.clear()
    run.sleep(T / 3)
    r = run.finish()
    r["extra"]["session_present"] = present_before
    if present_before < len(q2):
        r["violations"].append(f"only {present_before} of {len(q2)} reconnects to the same "
                               f"daemon found their session")
        r["ok"] = False
    return r


def sc_spool_kill(a):
    """The spool (mode always) under a seeded loop of SIGKILLs of the
    daemon: while every broker is down (records pile up in the spool), while
    the spool drains after they came back, and in steady state; each time
    restarted on the same spool and port, the brokers up in the end."""
    run = Run(a, "spool_kill", spool=True)
    rnd = random.Random(a.seed)
    T = max(a.duration, 8)
    t0 = time.monotonic()
    kills = collections.Counter()
    while time.monotonic() - t0 < T - 2:
        phase = rnd.choice(("ingest", "drain", "steady"))
        if phase != "steady":
            run.mock.cmd("down -1")
            run.sleep(rnd.uniform(0.3, 2.0))
        if phase == "drain":
            run.mock.cmd("up -1")
            run.sleep(rnd.uniform(0.0, 1.0))
        elif phase == "steady":
            run.sleep(rnd.uniform(0.3, 2.0))
        st = run.restart(signal.SIGKILL)
        run.check(st == -signal.SIGKILL, f"exit status after SIGKILL ({phase}): {st}")
        kills[phase] += 1
        if phase == "ingest":
            run.sleep(rnd.uniform(0.2, 1.0))
            run.mock.cmd("up -1")
        run.sleep(rnd.uniform(0.5, 2.0))
    run.mock.cmd("up -1")
    r = run.finish()
    r["extra"]["sigkills"] = (f"{sum(kills.values())} (while ingesting {kills['ingest']}, "
                              f"draining {kills['drain']}, steady {kills['steady']}), seed "
                              f"{a.seed}")
    r["extra"]["spool_replayed"] = (f"{r['spool_replayed']} records sent again from the spool "
                                    f"after a restart (confirmed by Kafka, not yet "
                                    f"checkpointed)")
    if not kills["ingest"] or not kills["drain"]:
        # A short run may draw no kill of a phase: say so, the seed decides.
        r["extra"]["note"] = "not every phase drew a kill with this seed and duration"
    return r


def sc_churn(a):
    run = Run(a, "churn_1000")
    churn = rel.Churn(run, 1000)
    churn.start()
    run.sleep(max(a.duration, 4))
    churn.stop.set()
    churn.join(60)
    run.check(not churn.is_alive(), "churn thread finished")
    run.check(churn.error is None, f"churn: {churn.error}")
    run.check(churn.connacks >= 1000, f"churn: {churn.connacks} CONNACKs in {churn.cycles} "
                                      f"cycles ({churn.failures} failures)")
    run.extra["churn"] = f"{churn.cycles} cycles, {churn.connacks} connacks, " \
                         f"{churn.failures} failures"
    r = run.finish()
    run_expect_no_disconnect(r)
    return r


SCENARIOS = {
    "broker_down": sc_broker_down,
    "all_down": sc_all_down,
    "leader": sc_leader,
    "rtt": sc_rtt,
    "retriable": sc_retriable,
    "topic_auth": sc_topic_auth,
    "msg_too_large": sc_msg_too_large,
    "queue_full": sc_queue_full,
    "sigterm": sc_sigterm,
    "sigkill": sc_sigkill,
    "client_kill": sc_client_kill,
    "churn": sc_churn,
    "spool_kill": sc_spool_kill,
}


# Faults only a real cluster has (--kafka real): nodes of the three-node
# cluster killed, stopped and restarted. librdkafka retries; with idempotence
# the brokers drop its resent batches, so duplicates must be 0.

def _leader(run, partition=0):
    return run.mock.partition(rel.KAFKA_TOPIC, partition)[0]


def sc_real_leader_kill(a):
    run = Run(a, "real_leader_kill")
    T = a.duration
    run.sleep(T / 3)
    victim = _leader(run)
    a.cluster.kill(victim)
    run.extra["killed"] = f"node {victim} (leader of partition 0) with SIGKILL"
    run.sleep(T / 3)
    a.cluster.start_node(victim, timeout=90)
    run.sleep(T / 3)
    r = run.finish()
    run_expect_no_disconnect(r)
    return r


def sc_real_rolling_restart(a):
    run = Run(a, "real_rolling_restart")
    run.sleep(a.duration / 4)
    for node in (1, 2, 3):
        a.cluster.restart(node, timeout=90)
        kafka_cluster.wait_for(lambda: all(len(run.mock.partition(rel.KAFKA_TOPIC, p)[2]) == 3
                                           for p in range(4)), 60, f"node {node} in every ISR")
    run.sleep(a.duration / 4)
    r = run.finish()
    run_expect_no_disconnect(r)
    return r


def sc_real_node_down(a):
    run = Run(a, "real_node_down")
    T = a.duration
    run.sleep(T / 3)
    a.cluster.stop_node(2)
    run.sleep(T / 3)
    a.cluster.start_node(2, timeout=90)
    run.sleep(T / 3)
    r = run.finish()
    run_expect_no_disconnect(r)
    return r


def acked(run):
    """QoS 1/2 messages acked so far. With no disconnect every message was sent once, so
    `excess` (rel.reconcile) counts any duplicate: with idempotence there must be none."""
    return sum(m.acked for d in run.devices for m in list(d.msgs))


def sc_real_isr_below_min(a):
    # Every partition on nodes 2 and 3 only (2 the leader): stopping node 3
    # leaves each ISR at [2], below min.insync.replicas=2, while the KRaft
    # quorum (2 of 3) stays. Node 2 refuses with NOT_ENOUGH_REPLICAS, which
    # librdkafka retries: no QoS 1/2 ack until node 3 is back, then acks resume.
    run = Run(a, "real_isr_below_min", topic={"replicas": [[2, 3]] * 4})
    T = max(a.duration, 12)
    run.sleep(T / 3)
    log2 = a.cluster.node(2).log_path
    mark = os.path.getsize(log2)
    t = time.monotonic()
    a.cluster.stop_node(3)
    t_stopped = time.monotonic()
    refused = run.wait(lambda: "NotEnoughReplicas" in _tail_from(log2, mark), 30,
                       "node 2 to refuse records with NOT_ENOUGH_REPLICAS")
    run.extra["node_3_stopped"] = (f"in {t_stopped - t:.1f} s; NOT_ENOUGH_REPLICAS "
                                   f"{time.monotonic() - t_stopped:.1f} s later")
    if refused:
        # What was acked by both replicas before the shrink may still arrive.
        run.sleep(1)
        before = acked(run)
        run.sleep(T / 3)
        stalled = acked(run) - before
        run.check(stalled == 0, f"{stalled} QoS 1/2 acks while the ISR was below "
                                f"min.insync.replicas")
        run.extra["isr_below_min"] = (f"{stalled} acks in the {T / 3 + 1:.0f} s after the "
                                      f"first NOT_ENOUGH_REPLICAS")
    t = time.monotonic()
    a.cluster.start_node(3, timeout=90)
    t_ready, resumed = time.monotonic(), acked(run)
    if run.wait(lambda: acked(run) > resumed, 60, "acks to resume with node 3 back"):
        run.extra["acks_resumed"] = (f"{time.monotonic() - t:.1f} s after node 3 was started "
                                     f"({t_ready - t:.1f} s until it served)")
    run.sleep(T / 3)
    r = run.finish()
    run_expect_no_disconnect(r)
    return r


def _tail_from(path, offset):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


BIG = 20000  # bytes of payload, above the topic's max.message.bytes


def sc_real_record_too_large(a):
    # The topic takes records up to 10000 bytes; at T/3 one client publishes
    # a 20000-byte QoS 1 and one a QoS 2 message. Kafka refuses them
    # (MESSAGE_TOO_LARGE, not retriable): each client is closed without an
    # ack, the record is not in Kafka (a "phantom" otherwise), and the
    # devices publishing meanwhile see nothing of it.
    run = Run(a, "real_record_too_large",
              {"kafka": {"properties": {"batch.size": 8000}}},
              topic={"partitions": 4, "replication": 3,
                     "config": {"max.message.bytes": "10000"}})
    T = a.duration
    run.sleep(T / 3)
    lines = []
    for qos in (1, 2):
        mark = len(run.daemon.log())
        cl = m2k.Raw(run.daemon.port).connect(f"big-q{qos}", keepalive=0)
        try:
            cl.send(m2k.publish(f"rel/big-q{qos}", b"B" * BIG, qos=qos, pid=1))
            cl.expect_close(timeout=30)
        except AssertionError as e:
            run.check(False, f"QoS {qos} {BIG}-byte PUBLISH: {e}")
        finally:
            cl.close()
        want = (f"Kafka did not take a QoS {qos} message on topic 'rel/big-q{qos}': "
                f"Broker: Message size too large")
        if run.wait(lambda: want in run.daemon.log()[mark:], 5, f"the log line {want!r}"):
            lines.append(f"QoS {qos}: closed, no ack")
    run.extra["too_large"] = ", ".join(lines)
    run.sleep(2 * T / 3)
    r = run.finish()
    run_expect_no_disconnect(r)
    return r


def sc_real_topic_recreated(a):
    # At T/3 the devices stop sending (they stay connected) until every
    # QoS 1/2 message is acked and every record sent is read back; then the
    # topic is deleted and recreated (new, empty) and the devices go on.
    # Accounting: the old topic's records read before the deletion plus the
    # new topic's, exactly once each. Acks resume into the new topic.
    run = Run(a, "real_topic_recreated")
    T = a.duration
    run.sleep(T / 3)
    run.pause.set()
    drained = run.wait(lambda: all(not d.pending for d in run.devices), 30,
                       "every QoS 1/2 message acked before the deletion")
    sent = sum(len(d.msgs) for d in run.devices)
    drained = drained and run.wait(lambda: len(run.reader.records) >= sent, 30,
                                   f"the {sent} records sent read back before the deletion")
    if drained:
        run.prior_records = run.reader.finish()
        run.mock.delete_user_topics()
        run.mock.create_topic(rel.KAFKA_TOPIC, 4, 3)
        run.reader = rel.Reader(run.mock.bootstrap, rel.KAFKA_TOPIC)
        run.extra["deleted"] = f"after {len(run.prior_records)} records"
    before, t = acked(run), time.monotonic()
    run.pause.clear()
    if run.wait(lambda: acked(run) > before, 60, "acks into the recreated topic"):
        run.extra["acks_resumed"] = f"{time.monotonic() - t:.1f} s after the devices went on"
    run.sleep(2 * T / 3)
    r = run.finish()
    run_expect_no_disconnect(r)
    return r


REAL_SCENARIOS = {
    "real_leader_kill": sc_real_leader_kill,
    "real_rolling_restart": sc_real_rolling_restart,
    "real_node_down": sc_real_node_down,
    "real_isr_below_min": sc_real_isr_below_min,
    "real_record_too_large": sc_real_record_too_large,
    "real_topic_recreated": sc_real_topic_recreated,
}


def real_fault(a, run, rnd):
    """One random fault of the real cluster, healed before it returns."""
    node = rnd.choice([1, 2, 3])
    if rnd.random() < 0.5:
        a.cluster.kill(node)
        name = f"node {node} SIGKILL"
    else:
        a.cluster.stop_node(node)
        name = f"node {node} SIGTERM"
    run.sleep(rnd.uniform(1, 4))
    a.cluster.start_node(node, timeout=90)
    return name


# --------------------------------------------------------------------------
# Soak

# Injected retriable Produce errors are left out: with pipelining (the
# production default) the mock cluster turns them into acked-but-unwritten
# records (see sc_retriable); the retriable scenario covers them.
FAULTS = [
    ("broker 2 down 3 s", ["down 2"], ["up 2"], 3),
    ("leaders moved", ["leader rel 0 2", "leader rel 1 3", "leader rel 2 1", "leader rel 3 2"],
     [], 0),
    ("RTT 500 ms for 3 s", ["rtt -1 500"], ["rtt -1 0"], 3),
    ("TOPIC_AUTHORIZATION_FAILED 1 s", ["push_errors Produce 64 TOPIC_AUTHORIZATION_FAILED"],
     ["clear_errors Produce"], 1),
    ("QoS 2 device killed at PUBREC", "kill", None, 0),
]
# With --spool the soak also kills the daemon (restarted on the same spool),
# as often as all the other faults together.
SPOOL_FAULTS = FAULTS + [("daemon SIGKILL", "sigkill", None, 0)] * len(FAULTS)


def slope_kib_per_min(samples):
    """Least-squares slope of (t s, rss KiB) in KiB/min."""
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    num = sum((t - mt) * (r - mr) for t, r in samples)
    den = sum((t - mt) ** 2 for t, _ in samples)
    return 60.0 * num / den if den else 0.0


def soak(a):
    qos = tuple([0, 1, 2] * 4)
    run = Run(a, "soak_spool" if a.spool else "soak", qos_list=qos, rate=a.soak_rate,
              spool=a.spool)
    rnd = random.Random(a.seed)
    samples, faults = [], []
    t0 = time.monotonic()
    stop = threading.Event()

    def sampler():
        while not stop.wait(1.0):
            st = rel.proc_status(run.daemon.proc.pid)
            if st:
                samples.append((time.monotonic() - t0, st["VmRSS"]))
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    while time.monotonic() - t0 < a.duration - 5:
        run.sleep(rnd.uniform(2, 8))
        if time.monotonic() - t0 >= a.duration - 5:
            break
        if a.kafka == "real":
            faults.append(f"{time.monotonic() - t0:.1f}s {real_fault(a, run, rnd)}")
            continue
        name, do, undo, hold = rnd.choice(SPOOL_FAULTS if a.spool else FAULTS)
        faults.append(f"{time.monotonic() - t0:.1f}s {name}")
        if do == "sigkill":
            st = run.restart(signal.SIGKILL)
            run.check(st == -signal.SIGKILL, f"exit status after SIGKILL: {st}")
            continue
        if do == "kill":
            rnd.choice([d for d in run.devices if d.qos == 2]).kill_next_pubrec.set()
            continue
        for c in do:
            run.mock.cmd(c)
        run.sleep(hold)
        for c in undo:
            run.mock.cmd(c)
    run.sleep(max(0.0, a.duration - (time.monotonic() - t0)))
    stop.set()
    th.join(5)
    warm = max(10.0, a.duration * 0.2)
    steady = [(t, r) for t, r in samples if t >= warm]
    slope = slope_kib_per_min(steady)
    r = run.finish()
    rss = [x for _, x in steady] or [0]
    r["extra"].update(faults=", ".join(faults), rss_samples=len(samples),
                      rss_kib_min_max=f"{min(rss)}..{max(rss)}",
                      rss_slope_kib_per_min=round(slope, 1), warmup_s=warm)
    if a.spool:
        r["extra"]["spool_replayed"] = (f"{r['spool_replayed']} records sent again from the "
                                        f"spool after {run.restarts} restarts")
    if a.duration >= 300 and slope > a.max_slope:
        r["violations"].append(f"RSS grows {slope:.1f} KiB/min after warm-up "
                               f"(bound {a.max_slope})")
        r["ok"] = False
    return r


# --------------------------------------------------------------------------

def fmt_row(r):
    q = r["sent_q"]
    hwm = f"{r['hwm_kb'] / 1024:.1f}"
    exits = ",".join(str(x) for x in r["exits"])
    return (f"| {r['scenario']} | {r['sent']} ({q[0]}/{q[1]}/{q[2]}) | {r['acked']} | "
            f"{r['in_kafka']} | {r['dup_q1']}/{r['dup_q2']} | {r['lost']} | {r['unacked']} | "
            f"{r.get('mock_reappended', 0)} | {r['qos0_missing']} | {r['lost_conns']} | {hwm} | "
            f"{exits} | "
            f"{'PASS' if r['ok'] else 'FAIL'} |")


HEADER = ("| scenario | sent (QoS 0/1/2) | acked (1/2) | in Kafka | duplicates (QoS 1/2) | "
          "lost | unacked at end | re-appended by the mock | QoS 0 missing | client disconnects | "
          "max RSS MiB (VmHWM) | exit status | result |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="all",
                    help="a comma list of: all (every scenario but soak), soak, " +
                    ", ".join(SCENARIOS) + " (mock), " + ", ".join(REAL_SCENARIOS) + " (real)")
    ap.add_argument("--kafka", choices=("mock", "real"),
                    default=os.environ.get("M2K_KAFKA", "mock"),
                    help="librdkafka's mock cluster, or a three-node Apache Kafka (default "
                         "$M2K_KAFKA, else mock)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per scenario")
    ap.add_argument("--rate", type=float, default=100.0, help="messages/s per device")
    ap.add_argument("--soak-rate", type=float, default=50.0, help="messages/s per soak device")
    ap.add_argument("--drain-timeout", type=float, default=60.0)
    ap.add_argument("--max-slope", type=float, default=256.0,
                    help="soak: RSS slope bound in KiB/min (checked for runs >= 300 s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--spool", action="store_true",
                    help="soak: the daemon with spool: {mode: always}, and SIGKILLs of it among "
                         "the faults")
    ap.add_argument("--threads", type=int, default=None,
                    help="the daemon's threads: (workers); default: the configuration's (0: "
                         "auto)")
    ap.add_argument("--kafka-debug", default=None,
                    help="librdkafka debug contexts for the daemon, log level debug (default "
                         "msg: its Produce lines show the batches it sent twice, which the "
                         "mock appends twice; none: off, and such copies count as duplicates; "
                         "none is the default with --kafka real)")
    ap.add_argument("--build-dir", default=os.environ.get("M2K_BUILD_DIR",
                                                          os.path.join(SOURCE_DIR, "build")))
    ap.add_argument("--workdir", default=None, help="parent of the per-scenario directories")
    ap.add_argument("--markdown", default=None, help="write the result table here")
    ap.add_argument("--json", default=None, help="write the full results here")
    a = ap.parse_args()
    a.build_dir = os.path.abspath(a.build_dir)
    m2k.DAEMON = os.path.join(a.build_dir, "mqtt2kafka")
    m2k.MOCK_KAFKA = os.path.join(a.build_dir, "tests", "tools", "m2k-mock-kafka")
    nofile = rel.raise_nofile(4096)
    if nofile < 2600:
        print(f"RLIMIT_NOFILE is {nofile}; the churn scenario needs 2600", file=sys.stderr)
        return 2

    if a.kafka_debug is None:
        a.kafka_debug = "none" if a.kafka == "real" else "msg"
    scenarios = REAL_SCENARIOS if a.kafka == "real" else SCENARIOS
    names = []
    for n in (n.strip() for n in a.scenario.split(",")):
        names += list(scenarios) if n == "all" else [n] if n else []
    if a.kafka == "real":
        d = tempfile.mkdtemp(prefix="m2k-rel-kafka-", dir=a.workdir)
        print(f"== starting a three-node Kafka in {d}", flush=True)
        a.cluster = kafka_cluster.Cluster(d, nodes=3)
        a.cluster.admin = kafka_cluster.RealKafka(a.cluster.bootstrap)
    try:
        return run_all(a, names, scenarios)
    finally:
        if a.kafka == "real":
            a.cluster.close()


def run_all(a, names, scenarios):
    results = []
    for n in names:
        fn = soak if n == "soak" else scenarios.get(n)
        if fn is None:
            print(f"unknown scenario {n}", file=sys.stderr)
            return 2
        t = time.monotonic()
        print(f"== {n}", flush=True)
        try:
            r = fn(a)
        except Exception as e:  # a harness failure fails the run, loudly
            import traceback
            traceback.print_exc()
            r = dict(scenario=n, sent=0, sent_q=[0, 0, 0], acked=0, in_kafka=0, dup_q1=0,
                     dup_q2=0, lost=0, unacked=0, qos0_missing=0, lost_conns=0, hwm_kb=0,
                     exits=[], ok=False, violations=[f"harness error: {e}"], extra={})
        r["seconds"] = round(time.monotonic() - t, 1)
        results.append(r)
        print(HEADER.splitlines()[0])
        print(fmt_row(r))
        if r.get("qos0_missing_ids"):
            r["extra"]["qos0_missing_ids"] = r["qos0_missing_ids"]
        for k, v in r.get("extra", {}).items():
            print(f"   {k}: {v}")
        for v in r["violations"]:
            print(f"   VIOLATION: {v}")
        print(f"   ({r['seconds']} s, logs in {r.get('workdir')})", flush=True)

    table = HEADER + "\n" + "\n".join(fmt_row(r) for r in results)
    print("\n" + table)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(table + "\n")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
