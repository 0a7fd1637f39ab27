#!/usr/bin/python3
"""Apache Kafka on loopback for the test suites: KRaft, no ZooKeeper.

The release is pinned in tests/kafka/pom.xml and fetched once from Maven
Central with `mvn` into ~/.cache/mqtt2kafka/kafka-<version>/libs (override the
cache root with M2K_KAFKA_CACHE); nothing but the pin is in the repository.

Every node is a combined broker+controller. One node for the common suite,
three (replication factor 3, min.insync.replicas=2) for the fault tests. Ports
are chosen at start; every node keeps its log (server.log) and data in the
cluster's directory, which is the test's tmp dir.

As a library:

    c = Cluster(tmp_dir, nodes=3)    # formats storage, starts, waits
    c.bootstrap                      # "127.0.0.1:p1,127.0.0.1:p2,..."
    c.kill(2); c.start_node(2); c.stop_node(1); c.wait_ready()
    c.close()

From the command line (the ctest fixture of the real-Kafka integration run):

    kafka_cluster.py fetch                  # the jars into the cache
    kafka_cluster.py start --dir D [--nodes N]   # writes D/bootstrap, returns
    kafka_cluster.py stop --dir D

`start` leaves a supervisor process behind that owns the brokers, stops them
on `stop` (SIGTERM) and by itself after --lifetime seconds, so a run that dies
before its cleanup does not leave JVMs behind for long.

Every wait is bounded and raises ClusterError when its bound is hit.
"""
import argparse
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
POM = os.path.join(HERE, "pom.xml")
LOG4J = os.path.join(HERE, "log4j2.yaml")
# Small heaps and the serial collector: the machines have 2 cores that
# several builds share.
JVM_OPTS = ["-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true"]


class ClusterError(Exception):
    pass


def kafka_version():
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    return ET.parse(POM).getroot().find("m:properties/m:kafka.version", ns).text


def cache_dir():
    root = os.environ.get("M2K_KAFKA_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "mqtt2kafka")
    return os.path.join(root, f"kafka-{kafka_version()}")


def fetch(timeout=900):
    """The pinned jars, fetched once per version of pom.xml (under a lock, so parallel callers wait
    for one download); returns the libs directory."""
    base = cache_dir()
    libs = os.path.join(base, "libs")
    done = os.path.join(base, "complete")
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(POM, "rb") as f:
            pin = hashlib.sha256(f.read()).hexdigest()
        if os.path.exists(done) and open(done).read().strip() == pin:
            return libs
        tmp = tempfile.mkdtemp(prefix="libs-", dir=base)
        cmd = ["mvn", "-B", "-q", "-f", POM, "dependency:copy-dependencies",
               f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ClusterError(f"mvn did not finish within {timeout} s") from None
        if r.returncode != 0 or not any(f.startswith("kafka_2.13-") for f in os.listdir(tmp)):
            shutil.rmtree(tmp, ignore_errors=True)
            raise ClusterError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-4000:]}")
        shutil.rmtree(libs, ignore_errors=True)
        os.rename(tmp, libs)
        with open(done, "w") as f:
            f.write(pin + "\n")  # a changed pom fetches again
        return libs


def free_ports(n):
    """n distinct loopback ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for(pred, timeout, what, interval=0.2):
    """pred()'s first truthy value; ClusterError when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise ClusterError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Node:
    def __init__(self, cluster, node_id, port, controller_port, secure_port=None):
        self.cluster, self.id = cluster, node_id
        self.port, self.controller_port = port, controller_port
        self.secure_port = secure_port
        self.dir = os.path.join(cluster.dir, f"node-{node_id}")
        self.data = os.path.join(self.dir, "data")
        self.props = os.path.join(self.dir, "server.properties")
        self.log_path = os.path.join(self.dir, "server.log")
        self.proc = None

    def write_config(self, extra):
        c = self.cluster
        n = len(c.nodes)
        voters = ",".join(f"{x.id}@127.0.0.1:{x.controller_port}" for x in c.nodes)
        props = {
            "process.roles": "broker,controller",
            "node.id": self.id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.data,
            # As the mock's auto-created topics (m2k-mock-kafka).
            "num.partitions": 4,
            "default.replication.factor": n,
            "min.insync.replicas": 2 if n >= 3 else 1,
            "offsets.topic.replication.factor": n,
            "offsets.topic.num.partitions": 1,
            "transaction.state.log.replication.factor": n,
            "transaction.state.log.min.isr": min(n, 2),
            "share.coordinator.state.topic.replication.factor": n,
            "share.coordinator.state.topic.min.isr": min(n, 2),
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "unclean.leader.election.enable": "false",
            "num.network.threads": 2,
            "num.io.threads": 2,
            "num.recovery.threads.per.data.dir": 1,
            "log.cleaner.threads": 1,
            # A killed node is noticed within seconds, not the default 9 s.
            "broker.session.timeout.ms": 4000,
            "broker.heartbeat.interval.ms": 500,
            "replica.lag.time.max.ms": 5000,
        }
        if c.secure:
            props.update(self._secure_props(c.secure))
        props.update(extra)
        os.makedirs(self.dir, exist_ok=True)
        with open(self.props, "w") as f:
            for k, v in props.items():
                f.write(f"{k}={v}\n")

    def _secure_props(self, sec):
        """A SASL_SSL listener (SCRAM-SHA-256 or PLAIN over TLS, the same
        users for both) for the proxy, and the standard authorizer: only ACLs
        let its principal in. PLAINTEXT (the tests' admin, replication) and
        CONTROLLER stay; their principal, ANONYMOUS, is a super user."""
        plain_users = " ".join(f'user_{u}="{p}"' for u, p in sec["users"].items())
        return {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port},"
                         f"SASL_SSL://127.0.0.1:{self.secure_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                                    f"SASL_SSL://127.0.0.1:{self.secure_port}",
            "listener.security.protocol.map":
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,PLAIN",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_ssl.plain.sasl.jaas.config":
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": sec["keystore"],
            "ssl.keystore.password": sec["keystore_password"],
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }

    def format(self):
        scram = []
        for user, password in (self.cluster.secure or {}).get("users", {}).items():
            scram += ["--add-scram", f"SCRAM-SHA-256=[name={user},password={password}]"]
        r = subprocess.run(
            ["java", *JVM_OPTS, "-cp", self.cluster.classpath, "kafka.tools.StorageTool",
             # "=": a random id may begin with "-"
             "format", f"--cluster-id={self.cluster.cluster_id}", f"--config={self.props}",
             *scram],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        if r.returncode != 0:
            raise ClusterError(f"StorageTool format node {self.id} failed:\n{r.stdout}")

    def start(self):
        assert not self.alive(), f"node {self.id} already running"
        log = open(self.log_path, "ab")
        log.write(f"==== start {time.strftime('%H:%M:%S')} ====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            ["java", *JVM_OPTS, f"-Dlog4j2.configurationFile={LOG4J}",
             "-cp", self.cluster.classpath, "kafka.Kafka", self.props],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig, timeout):
        if not self.alive():
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            if sig != signal.SIGKILL:
                raise ClusterError(f"node {self.id} ignored signal {sig} for {timeout} s")

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class Cluster:
    """`secure`, when given: {"keystore": PKCS12 path, "keystore_password": ...,
    "users": {name: password}} adds a SASL_SSL listener on every node
    (.secure_bootstrap) and turns the ACL authorizer on (.acl())."""

    def __init__(self, directory, nodes=1, extra_props=None, start=True, ready_timeout=90,
                 secure=None):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.classpath = os.path.join(fetch(), "*")
        self.cluster_id = _random_cluster_id()
        self.secure = secure
        k = 3 if secure else 2
        ports = free_ports(k * nodes)
        self.nodes = [Node(self, i + 1, *ports[k * i:k * i + k]) for i in range(nodes)]
        for n in self.nodes:
            shutil.rmtree(n.dir, ignore_errors=True)  # an earlier run's cluster
            n.write_config(extra_props or {})
        for n in self.nodes:
            n.format()
        if start:
            try:
                self.start(ready_timeout)
            except BaseException:
                self.close()  # no JVM left behind by a start that failed
                raise

    @property
    def bootstrap(self):
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def secure_bootstrap(self):
        return ",".join(f"127.0.0.1:{n.secure_port}" for n in self.nodes)

    def node(self, node_id):
        return self.nodes[node_id - 1]

    def acl(self, *args, timeout=60):
        """Kafka's AclCommand over PLAINTEXT, e.g. acl("--add", "--allow-principal",
        "User:m2k", "--operation", "Write", "--topic", "test")."""
        r = subprocess.run(
            ["java", *JVM_OPTS, "-Dlog4j2.configurationFile=" + LOG4J, "-cp", self.classpath,
             "org.apache.kafka.tools.AclCommand", "--bootstrap-server", self.bootstrap, *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if r.returncode != 0:
            raise ClusterError(f"AclCommand {' '.join(args)} failed:\n{r.stdout}")
        return r.stdout

    def start(self, timeout=90):
        for n in self.nodes:
            if not n.alive():
                n.start()
        self.wait_ready(timeout)

    def start_node(self, node_id, timeout=60):
        self.node(node_id).start()
        self.wait_ready(timeout)

    def stop_node(self, node_id, timeout=60):
        """SIGTERM: a controlled shutdown (leadership moves first)."""
        self.node(node_id).signal(signal.SIGTERM, timeout)

    def kill(self, node_id):
        """kill -9: no controlled shutdown."""
        self.node(node_id).signal(signal.SIGKILL, 10)

    def restart(self, node_id, timeout=60):
        self.stop_node(node_id)
        self.start_node(node_id, timeout)

    def alive_nodes(self):
        return [n for n in self.nodes if n.alive()]

    def _check_processes(self):
        dead = [n for n in self.nodes if n.proc is not None and not n.alive()
                and n.proc.returncode not in (-signal.SIGKILL, -signal.SIGTERM, 143, 137)]
        if dead:
            n = dead[0]
            raise ClusterError(f"node {n.id} exited with {n.proc.returncode}:\n{n.log_tail()}")

    def wait_ready(self, timeout=60):
        """Every running node registered with the controller and serving
        metadata; raises on timeout (with the log tails)."""
        from confluent_kafka.admin import AdminClient
        want = {n.id for n in self.alive_nodes()}
        boot = ",".join(f"127.0.0.1:{n.port}" for n in self.alive_nodes())

        def ready():
            self._check_processes()
            a = AdminClient({"bootstrap.servers": boot, "log_level": 0})
            try:
                md = a.list_topics(timeout=2)
            except Exception:  # noqa: BLE001 - not up yet
                return False
            return set(md.brokers) == want and md.controller_id in want

        try:
            wait_for(ready, timeout, f"nodes {sorted(want)} to serve")
        except ClusterError as e:
            raise ClusterError(f"{e}\n" + "\n".join(
                f"--- node {n.id} ({n.log_path}):\n{n.log_tail()}" for n in self.nodes)) from None

    def close(self, timeout=30):
        """SIGTERM to every node at once; -9 to any still running `timeout`
        seconds later."""
        running = self.alive_nodes()
        for n in running:
            n.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for n in running:
            try:
                n.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                n.proc.kill()
                n.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _random_cluster_id():
    import base64
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


# --------------------------------------------------------------------------
# What the integration tests' `mock_kafka` fixture is under M2K_KAFKA=real

class RealKafka:
    """A running cluster as the integration tests see it: .bootstrap, and
    .cmd() with the one mock command a real cluster has (`create`); the mock's
    fault commands skip the test."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap

    def _admin(self):
        from confluent_kafka.admin import AdminClient
        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})

    def user_topics(self, admin=None):
        md = (admin or self._admin()).list_topics(timeout=10)
        return {t for t in md.topics if not t.startswith("__")}

    def delete_user_topics(self, timeout=30):
        """Deletes every topic but the internal ones and waits until the
        cluster no longer lists them, so each test starts on an empty cluster
        as it does on a fresh mock."""
        a = self._admin()
        topics = self.user_topics(a)
        if not topics:
            return
        for t, f in a.delete_topics(sorted(topics), operation_timeout=timeout).items():
            try:
                f.result(timeout)
            except Exception as e:  # noqa: BLE001
                if "UNKNOWN_TOPIC" not in str(e):
                    raise ClusterError(f"deleting topic {t}: {e}") from None
        wait_for(lambda: not (self.user_topics(a) & topics), timeout, f"{sorted(topics)} deleted")

    def create_topic(self, name, partitions=1, replication=1, config=None, replicas=None,
                     timeout=30):
        """Creates `name` and waits until every partition has a leader;
        `replicas` ([[node, ...] per partition]) places the replicas, the
        first of each list being the preferred leader."""
        from confluent_kafka.admin import NewTopic
        a = self._admin()
        if replicas:
            partitions = len(replicas)
            t = NewTopic(name, partitions, replica_assignment=replicas, config=config or {})
        else:
            t = NewTopic(name, partitions, replication, config=config or {})
        a.create_topics([t], operation_timeout=timeout)[name].result(timeout)

        def ready():
            t = a.list_topics(name, timeout=5).topics.get(name)
            return (t is not None and t.error is None and len(t.partitions) == partitions
                    and all(p.leader >= 0 for p in t.partitions.values()))
        wait_for(ready, timeout, f"topic {name} with {partitions} partitions and leaders")

    def partition(self, topic, partition=0):
        """(leader, replicas, isr) of one partition, from the metadata."""
        t = self._admin().list_topics(topic, timeout=10).topics[topic]
        p = t.partitions[partition]
        return p.leader, list(p.replicas), sorted(p.isrs)

    def cmd(self, line, timeout=10):
        words = line.split()
        if words and words[0] == "create" and len(words) in (2, 3, 4):
            self.create_topic(words[1], int(words[2]) if len(words) > 2 else 4,
                              int(words[3]) if len(words) > 3 else 1)
            return "OK"
        import pytest
        pytest.skip(f"needs the mock Kafka's fault command {line!r}; M2K_KAFKA=real")

    def close(self):
        pass


# --------------------------------------------------------------------------
# Command line: a supervised cluster shared by several test processes

def _serve(args):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    status = os.path.join(args.dir, "status")
    try:
        c = Cluster(args.dir, nodes=args.nodes)
    except Exception as e:  # noqa: BLE001 - reported to `start` through the file
        with open(status, "w") as f:
            f.write(f"FAILED {e}\n")
        return 1
    with open(os.path.join(args.dir, "bootstrap.tmp"), "w") as f:
        f.write(c.bootstrap + "\n")
    os.rename(os.path.join(args.dir, "bootstrap.tmp"), os.path.join(args.dir, "bootstrap"))
    with open(status, "w") as f:
        f.write("READY\n")
    deadline = time.monotonic() + args.lifetime
    while not stop and time.monotonic() < deadline:
        time.sleep(0.5)
    c.close()
    return 0


def _start(args):
    os.makedirs(args.dir, exist_ok=True)
    for f in ("bootstrap", "status", "supervisor.pid"):
        if os.path.exists(os.path.join(args.dir, f)):
            os.unlink(os.path.join(args.dir, f))
    fetch()  # before the supervisor, so a download's errors show here
    with open(os.path.join(args.dir, "supervisor.log"), "ab") as log:
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve",
                              "--dir", args.dir, "--nodes", str(args.nodes),
                              "--lifetime", str(args.lifetime)],
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    with open(os.path.join(args.dir, "supervisor.pid"), "w") as f:
        f.write(f"{p.pid}\n")
    status = os.path.join(args.dir, "status")
    try:
        wait_for(lambda: os.path.exists(status) or p.poll() is not None, args.timeout,
                 "the cluster to start")
    except ClusterError:
        p.terminate()
        raise
    text = open(status).read() if os.path.exists(status) else f"supervisor exited {p.poll()}"
    if not text.startswith("READY"):
        raise ClusterError(text)
    print(f"kafka: {args.nodes} node(s) at {open(os.path.join(args.dir, 'bootstrap')).read().strip()}"
          f" (logs in {args.dir})")
    return 0


def _stop(args):
    try:
        pid = int(open(os.path.join(args.dir, "supervisor.pid")).read())
    except (OSError, ValueError):
        print("kafka: no cluster to stop")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0

    def gone():
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True
    wait_for(gone, args.timeout, f"supervisor {pid} to stop the cluster")
    os.unlink(os.path.join(args.dir, "supervisor.pid"))
    print("kafka: stopped")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch")
    for name in ("start", "serve"):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True)
        p.add_argument("--nodes", type=int, default=1)
        p.add_argument("--lifetime", type=float, default=3600,
                       help="seconds after which the supervisor stops the cluster itself")
        p.add_argument("--timeout", type=float, default=180)
    p = sub.add_parser("stop")
    p.add_argument("--dir", required=True)
    p.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "fetch":
            print(fetch())
            return 0
        return {"start": _start, "serve": _serve, "stop": _stop}[args.cmd](args)
    except ClusterError as e:
        print(f"kafka: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
