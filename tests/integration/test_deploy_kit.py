"""The deployment kit (deploy/, config/examples/) against the daemon it is for:
the Prometheus alert rules pass `promtool test rules`; every metric the rules
and the Grafana dashboard query is one the daemon serves; every dashboard
query is valid PromQL; every example configuration passes `mqtt2kafka
--check` with the files it names made in a temporary directory.

promtool comes from Debian's prometheus package (scripts/install-deps.sh test):
a missing promtool fails, never skips."""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

import m2k
from test_metrics import http_get, metrics_overrides

SRC = os.environ.get("M2K_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
RULES = os.path.join(SRC, "deploy/prometheus/mqtt2kafka.rules.yml")
RULES_TEST = os.path.join(SRC, "deploy/prometheus/mqtt2kafka.rules.test.yml")
DASHBOARD = os.path.join(SRC, "deploy/grafana/mqtt2kafka-dashboard.json")
EXAMPLES = os.path.join(SRC, "config/examples")
PROMTOOL = shutil.which("promtool") or "promtool"


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


def rule_exprs():
    doc = yaml.safe_load(open(RULES))
    return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs():
    d = json.load(open(DASHBOARD))
    out = [(f"panel {p['title']!r}", t["expr"]) for p in d["panels"] for t in p["targets"]]
    out += [(f"annotation {a['name']!r}", a["expr"]) for a in d["annotations"]["list"]]
    out += [(f"variable {v['name']!r}", v["query"]) for v in d["templating"]["list"]
            if v["type"] == "query"]
    return out


def grafana_to_promql(expr):
    """Grafana's variables replaced by what they stand for at query time."""
    expr = expr.replace("$__rate_interval", "5m").replace('=~"$instance"', '=~".*"')
    m = re.fullmatch(r"label_values\((\w+), *\w+\)", expr)
    return m.group(1) if m else expr


def metric_names(expr):
    return set(re.findall(r"\b(?:mqtt2kafka_[a-z0-9_]+|up)\b(?=\s*[{\[)\s/=><]|$)", expr))


def test_alert_rules_pass_promtool():
    out = run([PROMTOOL, "check", "rules", RULES])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 14 rules found" in out.stdout, out.stdout
    out = run([PROMTOOL, "test", "rules", os.path.basename(RULES_TEST)],
              cwd=os.path.dirname(RULES_TEST))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith("SUCCESS"), out.stdout


def test_dashboard_queries_are_promql(tmp_path):
    """Each query, Grafana variables replaced, as a recording rule: promtool
    parses every one."""
    rules = [{"record": f"m2k:dashboard_{i}", "expr": grafana_to_promql(e)}
             for i, (_, e) in enumerate(dashboard_exprs())]
    assert len(rules) >= 20, rules
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run([PROMTOOL, "check", "rules", str(path)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout, out.stdout


def served_names(port):
    code, body = http_get(port, "/metrics")
    assert code == 200, body
    names = set()
    for line in body.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)$", line)
        if m:
            names.add(m.group(1))
            if m.group(2) == "histogram":
                names.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
    return names


def test_rules_and_dashboard_query_served_metrics(daemon, tmp_path):
    # Statistics every 200 ms, so the mqtt2kafka_kafka_* families from
    # librdkafka's statistics are served too; the spool on, for its alerts.
    d = daemon(m2k.merge(metrics_overrides(0, **{"statistics.interval.ms": 200}),
                         {"spool": {"dir": str(tmp_path / "spool")}}))
    port = int(d.wait_log(r"metrics listening on 127\.0\.0\.1:(\d+) ", since=0).group(1))
    m2k.wait_until(lambda: "mqtt2kafka_kafka_broker_up" in served_names(port), 10,
                   "librdkafka statistics in /metrics")
    served = served_names(port) | {"up"}
    wanted = rule_exprs() + [(w, grafana_to_promql(e)) for w, e in dashboard_exprs()]
    missing = [(where, n) for where, e in wanted for n in sorted(metric_names(e)) if n not in served]
    assert missing == [], f"queried but not served by the daemon: {missing}"
    # Every query names at least one metric (the regex did not miss them).
    assert all(metric_names(e) for _, e in wanted), [w for w, e in wanted if not metric_names(e)]


def make_files(tmp, text):
    """Creates every /etc/mqtt2kafka/... file the example names, in tmp, and
    returns the example with its paths moved there."""
    names = sorted(set(re.findall(r"/etc/mqtt2kafka/([\w./-]+)", text)))
    ca_key, ca = tmp / "ca.key", tmp / "ca.pem"
    out = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
               "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=test CA"])
    assert out.returncode == 0, out.stderr
    for n in names:
        p = tmp / n
        p.parent.mkdir(parents=True, exist_ok=True)
        if n.endswith("ca.pem"):
            shutil.copy(ca, p)
        elif n.endswith(".pem") or n.endswith(".key"):
            stem = p.with_suffix("")
            key, cert = stem.with_suffix(".key"), stem.with_suffix(".pem")
            if not key.exists():
                out = run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                           "-nodes", "-keyout", str(key), "-out", str(tmp / "req.csr"),
                           "-subj", "/CN=mqtt.example.net"])
                assert out.returncode == 0, out.stderr
                out = run(["openssl", "x509", "-req", "-in", str(tmp / "req.csr"), "-CA", str(ca),
                           "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2", "-out", str(cert)])
                assert out.returncode == 0, out.stderr
        elif n.endswith(".acl"):
            shutil.copy(os.path.join(EXAMPLES, os.path.basename(n)), p)
        elif n.endswith("passwd"):
            for user in ("tenant-a", "tenant-b"):
                out = run([m2k.DAEMON, "passwd", str(p), user], input=f"secret-{user}\n")
                assert out.returncode == 0, out.stdout + out.stderr
        else:
            raise AssertionError(f"the test does not know how to make {n}")
    return text.replace("/etc/mqtt2kafka/", f"{tmp}/")


EXAMPLE_FILES = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".yaml"))


def test_there_are_examples():
    assert EXAMPLE_FILES == ["acl-per-tenant.yaml", "managed-kafka-scram.yaml", "mtls-devices.yaml"]


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_passes_check(tmp_path, name):
    text = make_files(tmp_path, open(os.path.join(EXAMPLES, name)).read())
    cfg = tmp_path / name
    cfg.write_text(text)
    out = run([m2k.DAEMON, "--check", "-c", str(cfg)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("configuration OK"), out.stdout + out.stderr
