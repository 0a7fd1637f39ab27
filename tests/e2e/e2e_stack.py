#!/usr/bin/python3
"""Apache Cassandra and Kafka Connect (standalone) on loopback for the
end-to-end test (test_end_to_end.py); Kafka itself is tests/kafka/kafka_cluster.py.

The releases are pinned in tests/e2e/pom.xml (Cassandra, Connect) and built
from tests/e2e/sink/ (our sink connector), fetched and built once with `mvn`
into ~/.cache/mqtt2kafka/e2e-<hash of the three files> (M2K_KAFKA_CACHE moves
the root, as for Kafka). Every process keeps its log in its directory (the
test's tmp dir), every wait is bounded, close() ends what start() began.

    python3 tests/e2e/e2e_stack.py fetch     # jars and the connector into the cache
"""
import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "kafka"))
from kafka_cluster import ClusterError, free_ports, wait_for  # noqa: E402

POM = os.path.join(HERE, "pom.xml")
SINK = os.path.join(HERE, "sink")
SINK_FILES = [os.path.join(SINK, "pom.xml")] + sorted(
    os.path.join(d, f) for d, _, fs in os.walk(os.path.join(SINK, "src")) for f in fs)

# Small heaps, the serial collector, C1 only: 2 cores shared by several builds.
SMALL_JVM = ["-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true"]

# Cassandra 5.0's conf/jvm17-server.options: what it reaches inside the JDK.
CASSANDRA_JDK17 = [
    f"--add-exports={x}=ALL-UNNAMED" for x in (
        "java.base/jdk.internal.misc", "java.base/jdk.internal.ref", "java.base/sun.nio.ch",
        "java.management.rmi/com.sun.jmx.remote.internal.rmi", "java.rmi/sun.rmi.registry",
        "java.rmi/sun.rmi.server", "java.sql/java.sql", "java.base/java.lang.ref",
        "jdk.unsupported/sun.misc")
] + [
    f"--add-opens={x}=ALL-UNNAMED" for x in (
        "java.base/java.lang.module", "java.base/jdk.internal.loader",
        "java.base/jdk.internal.ref", "java.base/jdk.internal.reflect",
        "java.base/jdk.internal.math", "java.base/jdk.internal.module",
        "java.base/jdk.internal.util.jar", "jdk.management/com.sun.management.internal",
        "java.base/sun.nio.ch", "java.base/java.io", "java.base/java.nio",
        "java.base/java.util.concurrent", "java.base/java.util",
        "java.base/java.util.concurrent.atomic", "java.base/java.lang",
        "java.base/java.math", "java.base/java.lang.reflect", "java.base/java.net")
]


def cache_dir():
    h = hashlib.sha256()
    for p in [POM] + SINK_FILES:
        with open(p, "rb") as f:
            h.update(p.encode() + b"\0" + f.read())
    root = os.environ.get("M2K_KAFKA_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "mqtt2kafka")
    return os.path.join(root, f"e2e-{h.hexdigest()[:16]}")


def _mvn(args, what, timeout):
    cmd = ["mvn", "-B", "-q", *args]
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{what}: mvn did not finish within {timeout} s") from None
    if r.returncode != 0:
        raise ClusterError(f"{what}: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-4000:]}")


def fetch(timeout=900):
    """{"cassandra": libs, "connect": libs, "plugins": plugin.path}, fetched and built once
    per version of the pins (under a lock: parallel callers wait for one download)."""
    base = cache_dir()
    out = {k: os.path.join(base, k) for k in ("cassandra", "connect", "plugins")}
    done = os.path.join(base, "complete")
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(done):
            return out
        tmp = tempfile.mkdtemp(prefix="fetch-", dir=base)
        try:
            for profile in ("cassandra", "connect"):
                _mvn(["-f", POM, f"-P{profile}", "dependency:copy-dependencies",
                      f"-DoutputDirectory={tmp}/{profile}", "-DincludeScope=runtime"],
                     profile, timeout)
            # The sink is built from a copy: nothing is written into the source tree.
            src = os.path.join(tmp, "sink-src")
            shutil.copytree(SINK, src, ignore=shutil.ignore_patterns("target"))
            plugin = os.path.join(tmp, "plugins", "m2k-cql-sink")
            _mvn(["-f", os.path.join(src, "pom.xml"), "package",
                  "dependency:copy-dependencies", "-DincludeScope=runtime",
                  f"-DoutputDirectory={plugin}"], "sink connector", timeout)
            shutil.copy(os.path.join(src, "target", "m2k-cql-sink-1.jar"), plugin)
            for k in out:
                os.rename(os.path.join(tmp, k), out[k])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        with open(done, "w") as f:
            f.write("ok\n")
        return out


def _log_tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def _die_with_parent():
    # PR_SET_PDEATHSIG: a test runner killed before its cleanup leaves no JVM behind.
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)


class _Proc:
    """One JVM in its own process group, its output in `log_path`; killed if the process
    that started it dies."""

    def __init__(self, name, cmd, log_path):
        self.name, self.log_path = name, log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent)

    def check(self):
        rc = self.proc.poll()
        if rc is not None:
            raise ClusterError(f"{self.name} exited with {rc}:\n{_log_tail(self.log_path)}")

    def close(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class Cassandra:
    """One Apache Cassandra node on 127.0.0.1 with a configuration of ours; .port is the
    CQL (native protocol) port."""

    def __init__(self, directory, libs, heap="512m", ready_timeout=240):
        self.dir = os.path.abspath(directory)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.port, storage_port = free_ports(2)
        self.log_path = os.path.join(self.dir, "cassandra.log")
        conf = os.path.join(self.dir, "cassandra.yaml")
        data = os.path.join(self.dir, "data")
        with open(conf, "w") as f:
            f.write(f"""cluster_name: m2k-e2e
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:{storage_port}"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {storage_port}
native_transport_port: {self.port}
start_native_transport: true
data_file_directories: [{data}/data]
commitlog_directory: {data}/commitlog
saved_caches_directory: {data}/saved_caches
hints_directory: {data}/hints
cdc_raw_directory: {data}/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
key_cache_size: 0MiB
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
concurrent_reads: 4
concurrent_writes: 4
concurrent_compactors: 1
""")
        with open(os.path.join(self.dir, "logback.xml"), "w") as f:
            f.write("""<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
""")
        cmd = ["java", *SMALL_JVM, f"-Xmx{heap}", "-Xss512k", *CASSANDRA_JDK17,
               f"-Dcassandra.config=file://{conf}",
               f"-Dlogback.configurationFile={self.dir}/logback.xml",
               f"-Dcassandra.logdir={self.dir}", f"-Dcassandra.storagedir={data}",
               "-Dcassandra-foreground=yes", "-Dcassandra.skip_wait_for_gossip_to_settle=0",
               "-Dcassandra.ring_delay_ms=100", "-Dcassandra.superuser_setup_delay_ms=0",
               "-cp", os.path.join(libs, "*"), "org.apache.cassandra.service.CassandraDaemon"]
        self._proc = _Proc("cassandra", cmd, self.log_path)
        try:
            self.wait_ready(ready_timeout)
        except BaseException:
            self.close()
            raise

    def session(self):
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import WhiteListRoundRobinPolicy
        profile = ExecutionProfile(
            load_balancing_policy=WhiteListRoundRobinPolicy(["127.0.0.1"]), request_timeout=30)
        c = Cluster(["127.0.0.1"], port=self.port, protocol_version=5,
                    execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                    connect_timeout=5, control_connection_timeout=5)
        try:
            return c, c.connect()
        except BaseException:
            c.shutdown()
            raise

    def wait_ready(self, timeout):
        def ready():
            self._proc.check()
            return "Starting listening for CQL clients" in _log_tail(self.log_path, 400)

        try:
            wait_for(ready, timeout, "Cassandra to listen for CQL clients", interval=1)
        except ClusterError as e:
            raise ClusterError(f"{e}\n--- {self.log_path}:\n{_log_tail(self.log_path)}") from None

    def close(self):
        self._proc.close()


class Connect:
    """Kafka Connect in standalone mode with one connector (a dict of its properties); offsets
    in a file of its directory; .rest is the REST address."""

    def __init__(self, directory, libs, plugins, bootstrap, connector, heap="384m"):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        (rest,) = free_ports(1)
        self.rest = f"http://127.0.0.1:{rest}"
        self.name = connector["name"]
        self.log_path = os.path.join(self.dir, "connect.log")
        worker = os.path.join(self.dir, "worker.properties")
        conn = os.path.join(self.dir, "connector.properties")
        _write_props(worker, {
            "bootstrap.servers": bootstrap,
            "listeners": self.rest,
            "plugin.path": plugins,
            "plugin.discovery": "service_load",
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.storage.StringConverter",
            "offset.storage.file.filename": os.path.join(self.dir, "offsets"),
            "offset.flush.interval.ms": 1000,
            # A new consumer group reads the topics from their first record.
            "consumer.auto.offset.reset": "earliest",
        })
        _write_props(conn, connector)
        # XML: Connect's classpath has no YAML parser for tests/kafka/log4j2.yaml.
        log4j = os.path.join(self.dir, "log4j2.xml")
        with open(log4j, "w") as f:
            f.write("""<Configuration>
  <Appenders><Console name="STDOUT"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers><Root level="INFO"><AppenderRef ref="STDOUT"/></Root></Loggers>
</Configuration>
""")
        cmd = ["java", *SMALL_JVM, f"-Xmx{heap}", f"-Dlog4j2.configurationFile={log4j}",
               "-cp", os.path.join(libs, "*"),
               "org.apache.kafka.connect.cli.ConnectStandalone", worker, conn]
        self._proc = _Proc("kafka connect", cmd, self.log_path)

    def status(self):
        """The connector's status (GET /connectors/<name>/status), None until it answers."""
        import json
        import urllib.request
        self._proc.check()
        try:
            with urllib.request.urlopen(f"{self.rest}/connectors/{self.name}/status",
                                        timeout=5) as r:
                return json.load(r)
        except OSError:
            return None

    def check_tasks(self):
        """The status; raises ClusterError (with the log tail) if Connect exited or a task
        FAILED, so a wait on the sink's rows ends at once instead of at its bound."""
        s = self.status()
        if s and any(t["state"] == "FAILED" for t in s.get("tasks", [])):
            raise ClusterError(f"connector task failed: {s}\n--- {self.log_path}:\n"
                               f"{_log_tail(self.log_path)}")
        return s

    def wait_running(self, timeout=120):
        def running():
            s = self.check_tasks()
            return (s and s["connector"]["state"] == "RUNNING" and s["tasks"]
                    and all(t["state"] == "RUNNING" for t in s["tasks"]))

        try:
            wait_for(running, timeout, f"connector {self.name} and its tasks RUNNING", 1)
        except ClusterError as e:
            raise ClusterError(f"{e}\n--- {self.log_path}:\n{_log_tail(self.log_path)}") from None

    def close(self):
        self._proc.close()


def _write_props(path, props):
    with open(path, "w") as f:
        for k, v in props.items():
            f.write(f"{k}={v}\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit(__doc__)
    print(fetch())
