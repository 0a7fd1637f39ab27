"""The introspection endpoint on the metrics listener (docs/operations.md):
GET /clients and GET /sessions with exact JSON for known raw clients and a
persistent session left behind, pagination, and the limit bound."""
import datetime
import json
import re

import m2k
from m2k import Raw
from test_metrics import http_get, scrape
from test_session_limits import start

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def get_json(port, path):
    code, body = http_get(port, path)
    assert code == 200, body
    return json.loads(body)


def check_time(doc, items, field, before, after):
    """Each item's time is RFC 3339 UTC with ms, between the two wall clock
    readings around the event, with a second of slack each side: the daemon
    maps its loop's cached monotonic time to the wall clock at the request,
    so the time can be early or late by a loop turn (and it has ms, ours
    more); returns the items without it and leaves the envelope in doc."""
    out = []
    for it in doc[items]:
        t = it.pop(field)
        assert RFC3339.match(t), t
        at = datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc)
        slack = datetime.timedelta(seconds=1)
        assert before - slack <= at <= after + slack, (t, before, after)
        out.append(it)
    doc[items] = []
    return out


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def test_clients_and_sessions(daemon):
    d, mport = start(daemon)
    assert get_json(mport, "/clients") == {
        "total": 0, "offset": 0, "limit": 100, "next_offset": None, "clients": []}
    before = now()
    a = Raw(d.port).connect("ic-a")
    b = Raw(d.port).connect("ic-b", username="alice")
    c = Raw(d.port).connect("ic-c", clean=False)
    after = now()
    addr = {r: "127.0.0.1:%d" % r.sock.getsockname()[1] for r in (a, b, c)}
    listener = "127.0.0.1:0"  # the listener's listen setting, as written

    def client(r, cid, user=None, proto="3.1.1"):
        return {"client_id": cid, "address": addr[r], "username": user, "protocol": proto,
                "listener": listener, "in_flight": 0, "paused": False}

    doc = get_json(mport, "/clients")
    items = check_time(doc, "clients", "connected_since", before, after)
    assert doc == {"total": 3, "offset": 0, "limit": 100, "next_offset": None, "clients": []}
    # Oldest connection first.
    assert items == [client(a, "ic-a"), client(b, "ic-b", "alice"), client(c, "ic-c")]

    # Pagination: two pages of two.
    doc = get_json(mport, "/clients?limit=2")
    assert check_time(doc, "clients", "connected_since", before, after) == [
        client(a, "ic-a"), client(b, "ic-b", "alice")]
    assert doc == {"total": 3, "offset": 0, "limit": 2, "next_offset": 2, "clients": []}
    doc = get_json(mport, "/clients?offset=2&limit=2")
    assert check_time(doc, "clients", "connected_since", before, after) == [client(c, "ic-c")]
    assert doc == {"total": 3, "offset": 2, "limit": 2, "next_offset": None, "clients": []}
    doc = get_json(mport, "/clients?offset=9")
    assert doc == {"total": 3, "offset": 9, "limit": 100, "next_offset": None, "clients": []}

    # The limit bound, and other paths.
    assert http_get(mport, "/clients?limit=1001") == (
        400, "bad request: limit must be an integer from 1 to 1000\n")
    assert http_get(mport, "/sessions?limit=0") == (
        400, "bad request: limit must be an integer from 1 to 1000\n")
    assert http_get(mport, "/clients/ic-a") == (404, "not found\n")

    # ic-c leaves its persistent session behind.
    assert get_json(mport, "/sessions") == {
        "total": 0, "offset": 0, "limit": 100, "next_offset": None, "sessions": []}
    before = now()
    c.send(m2k.DISCONNECT)
    c.expect_close()
    m2k.wait_until(lambda: get_json(mport, "/sessions")["total"] == 1, 10,
                   "the detached session in /sessions")
    after = now()
    doc = get_json(mport, "/sessions")
    held = int(scrape(mport)["mqtt2kafka_persistent_session_bytes"])
    assert held > 0
    assert check_time(doc, "sessions", "disconnected_since", before, after) == [
        {"client_id": "ic-c", "in_flight": 0, "bytes_held": held}]
    assert doc == {"total": 1, "offset": 0, "limit": 100, "next_offset": None, "sessions": []}
    doc = get_json(mport, "/clients")
    assert [it["client_id"] for it in doc["clients"]] == ["ic-a", "ic-b"]
    assert doc["total"] == 2
    a.close()
    b.close()
