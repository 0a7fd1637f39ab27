"""Fixtures for the integration tests (helpers live in m2k.py).

- mock_kafka: a fresh m2k-mock-kafka process per test (.bootstrap, .cmd()).
  Under M2K_KAFKA=real it is the real Apache Kafka of `real_kafka` with every
  user topic deleted first; .cmd() creates topics and skips the test for the
  mock's fault commands.
- real_kafka: (session) the real cluster: the bootstrap in the file named by
  M2K_KAFKA_BOOTSTRAP_FILE (ctest's shared broker), else one node started for
  this session (tests/kafka/kafka_cluster.py).
- daemon: a factory; daemon() or daemon({"unmapped": "drop"}) starts
  mqtt2kafka on a free loopback port against mock_kafka and returns an
  m2k.Daemon (.port, .proc, .mark(), .log(), .wait_log(), .stop()). Every
  daemon must exit with status 0 when the test ends.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "kafka"))
import m2k  # noqa: E402
import kafka_cluster  # noqa: E402

KAFKA = os.environ.get("M2K_KAFKA", "mock")
assert KAFKA in ("mock", "real"), f"M2K_KAFKA={KAFKA}: mock or real"


@pytest.fixture(scope="session")
def real_kafka(tmp_path_factory):
    path = os.environ.get("M2K_KAFKA_BOOTSTRAP_FILE")
    if path:
        with open(path) as f:
            yield kafka_cluster.RealKafka(f.read().strip())
        return
    with kafka_cluster.Cluster(tmp_path_factory.mktemp("kafka"), nodes=1) as c:
        yield kafka_cluster.RealKafka(c.bootstrap)


@pytest.fixture
def mock_kafka(request):
    if KAFKA == "real":
        rk = request.getfixturevalue("real_kafka")
        rk.delete_user_topics()
        yield rk
        return
    mk = m2k.MockKafka()
    try:
        yield mk
    finally:
        mk.close()


@pytest.fixture
def daemon(tmp_path, mock_kafka):
    started = []

    def start(overrides=None, bootstrap=None, name=None, env=None):
        d = m2k.Daemon(tmp_path, bootstrap or mock_kafka.bootstrap, overrides,
                       name=name or f"mqtt2kafka{len(started)}", env=env)
        started.append(d)
        return d

    yield start
    # Each daemon ends with status 0 (a crash, or a shutdown that hung and
    # was killed, fails the test that passed otherwise). Under the ASan/UBSan
    # build (make sanitize) any report fails the test too, whatever the test
    # itself checked.
    exits = {d.log_path.name: d.stop() for d in started}
    reports = [line for d in started for line in d.sanitizer_reports()]
    assert not reports, "sanitizer reported:\n" + "\n".join(reports)
    assert all(rc == 0 for rc in exits.values()), f"exit status: {exits}"
