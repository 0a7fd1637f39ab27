"""Fixtures for the integration tests (helpers live in m2k.py).

- mock_kafka: a fresh m2k-mock-kafka process per test (.bootstrap, .cmd()).
- daemon: a factory; daemon() or daemon({"unmapped": "drop"}) starts
  mqtt2kafka on a free loopback port against mock_kafka and returns an
  m2k.Daemon (.port, .proc, .log(), .wait_log(), .stop()). Tests that need the
  daemon SKIP while the binary does not serve (the daemon not merged yet).
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import m2k  # noqa: E402


@pytest.fixture
def mock_kafka():
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
    for d in started:
        d.stop()
    # Under the ASan/UBSan build (make sanitize) any report fails the test,
    # whatever the test itself checked.
    reports = [line for d in started for line in d.sanitizer_reports()]
    assert not reports, "sanitizer reported:\n" + "\n".join(reports)
