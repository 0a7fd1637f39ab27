"""QoS 2 across a daemon restart with the spool: the ids a persistent
session holds between PUBREC and PUBREL are kept in the spool's state file,
so a resend with DUP after SIGKILL or SIGTERM gets PUBREC without a second
Kafka record, and its PUBREL gets PUBCOMP. A PUBCOMP goes out only once the
state without its id is on disk (a reused id is a new message after a
crash), and a state save that fails answers nothing until one succeeds."""
import re
import struct

import pytest

import m2k
from m2k import Raw, publish
from test_metrics import scrape
from test_spool import FAST_RECONNECT, spool_cfg


def daemon_cfg(tmp_path, mode="always"):
    return m2k.merge(spool_cfg(tmp_path),
                     {"spool": {"mode": mode}, "kafka": {"properties": FAST_RECONNECT},
                      "topics": [{"mqtt": "test/q2", "kafka": "test"}]})


def first_run(tmp_path, mock_kafka, client_id, pid, payload, how="kill"):
    """A first daemon, every broker down: client_id (clean session 0)
    publishes QoS 2 and gets PUBREC from the spool; returns the connection
    (for more) and a function that stops the daemon with SIGKILL or SIGTERM
    and brings the brokers up. Brokers down, so Kafka confirms nothing in
    the first run: the spool's own replay of what Kafka took after its last
    checkpoint (at least once, tested in test_spool.py) adds no copy here,
    and every second copy would be the QoS 2 resend's."""
    mock_kafka.cmd("down -1")
    d1 = m2k.Daemon(tmp_path, mock_kafka.bootstrap, daemon_cfg(tmp_path), name="first")

    def end():
        if how == "kill":  # not the fixture's: its exit status is -9
            d1.proc.kill()
            d1.proc.wait(10)
            d1._log.close()
        else:
            assert d1.stop() == 0
        mock_kafka.cmd("up -1")
    try:
        cl = Raw(d1.port).connect(client_id, clean=False, keepalive=0)
        cl.send(publish("test/q2", payload, qos=2, pid=pid))
        cl.expect(m2k.pubrec(pid))  # acked from the spool: the id awaits PUBREL
    except BaseException:
        end()
        raise
    return d1, cl, end


def exchange(cl, payload, pid, dup=False):
    """A whole QoS 2 exchange on test/q2: PUBLISH, PUBREC, PUBREL, PUBCOMP."""
    cl.send(publish("test/q2", payload, qos=2, pid=pid, dup=dup))
    cl.expect(m2k.pubrec(pid))
    cl.send(m2k.pubrel(pid))
    cl.expect(m2k.pubcomp(pid))


@pytest.mark.parametrize("how", ["kill", "term"])
def test_qos2_id_awaiting_pubrel_survives_a_restart(daemon, mock_kafka, tmp_path, how):
    d1, cl, end = first_run(tmp_path, mock_kafka, "q2dev", 7, b"once", how)
    try:
        cl.send(publish("test/q2", b"released", qos=2, pid=8))
        cl.expect(m2k.pubrec(8))
        cl.send(m2k.pubrel(8))
        cl.expect(m2k.pubcomp(8))
        # Another client's clean session: its ids are not kept.
        other = Raw(d1.port).connect("clean", keepalive=0)
        other.send(publish("test/q2", b"clean", qos=2, pid=9))
        other.expect(m2k.pubrec(9))
    finally:
        end()
    d2 = daemon(daemon_cfg(tmp_path), name="second")
    d2.wait_log(m2k.line("spool: restored 1 sessions with 1 QoS 2 ids awaiting PUBREL "
                         "(0 not restored)", level="info"), since=0)  # a start-up line
    # The session is back (present), holding id 7 and nothing else.
    cl = Raw(d2.port).connect("q2dev", clean=False, session_present=True, keepalive=0)
    cl.send(publish("test/q2", b"once", qos=2, pid=7, dup=True))
    cl.expect(m2k.pubrec(7))  # the same message: no second record
    cl.send(m2k.pubrel(7))
    cl.expect(m2k.pubcomp(7))
    # Id 8 was released before the restart: reused, it is a new message.
    cl.send(publish("test/q2", b"new", qos=2, pid=8))
    cl.expect(m2k.pubrec(8))
    cl.send(m2k.pubrel(8))
    cl.expect(m2k.pubcomp(8))
    # Released now: a new message with id 7 (DUP 0) goes to Kafka too.
    cl.send(publish("test/q2", b"seven", qos=2, pid=7))
    cl.expect(m2k.pubrec(7))
    cl.send(m2k.pubrel(7))
    cl.expect(m2k.pubcomp(7))
    cl.send(m2k.DISCONNECT)
    cl.close()
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 5)
    assert sorted(r.value for r in recs) == sorted(
        [b"once", b"released", b"clean", b"new", b"seven"])


def test_restored_id_with_dup_0_is_a_new_message(daemon, mock_kafka, tmp_path):
    """An id the client released (PUBCOMP) but whose release the state file
    may not have caught before a crash: reused with DUP 0, it is produced."""
    first_run(tmp_path, mock_kafka, "reuse", 5, b"first")[2]()
    d2 = daemon(daemon_cfg(tmp_path), name="second")
    cl = Raw(d2.port).connect("reuse", clean=False, session_present=True, keepalive=0)
    cl.send(publish("test/q2", b"second", qos=2, pid=5))
    cl.expect(m2k.pubrec(5))
    cl.send(m2k.pubrel(5))
    cl.expect(m2k.pubcomp(5))
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 2)
    assert sorted(r.value for r in recs) == [b"first", b"second"]


def slots(tmp_path):
    """The state's slot files that exist: state.0, state.1, in the spool of
    the worker that saved them (with threads: N, spool/w<k> for k > 0)."""
    for d in m2k.spool_dirs(tmp_path / "spool"):
        found = [p for p in (d / "state.0", d / "state.1") if p.exists()]
        if found:
            return found
    return []


def newest_payload(tmp_path):
    """The payload of the newest valid slot ("M2KT" | u32 2 | u32 len | u32 crc32c
    of gen and payload | u64 gen | payload)."""
    best = None
    for p in slots(tmp_path):
        b = p.read_bytes()
        magic, version, n, crc, gen = struct.unpack("<4sIIIQ", b[:24])
        assert (magic, version) == (b"M2KT", 2)
        assert crc == crc32c(b[16:24 + n])
        if best is None or gen > best[0]:
            best = (gen, b[24:24 + n])
    return best[1]


def test_corrupt_state_file_is_set_aside_and_logged(daemon, mock_kafka, tmp_path):
    first_run(tmp_path, mock_kafka, "flip", 3, b"x", how="term")[2]()
    for p in slots(tmp_path):  # no slot checks: none is read
        data = bytearray(p.read_bytes())
        data[20] ^= 0x01  # in the generation, under the CRC
        p.write_bytes(bytes(data))
    state = slots(tmp_path)[-1]
    d2 = daemon(daemon_cfg(tmp_path), name="second")
    d2.wait_log(m2k.line(f"spool: {state}: bad checksum: moved aside as {state.name}.corrupt "
                         "(its QoS 2 ids are lost: a resend of those messages goes to Kafka "
                         "again)", level="error"), since=0)  # a start-up line
    assert (state.parent / f"{state.name}.corrupt").exists()
    Raw(d2.port).connect("flip", clean=False, session_present=False, keepalive=0)


def test_torn_newest_slot_falls_back_to_the_one_before(daemon, mock_kafka, tmp_path):
    """A save cut short by a crash leaves its slot torn: the slot before it
    is read (here it holds id 3 too), logged."""
    d1, cl, end = first_run(tmp_path, mock_kafka, "torn", 3, b"x", how="term")
    try:
        exchange(cl, b"y", 4)  # more saves: both slots written
    finally:
        end()
    assert len(slots(tmp_path)) == 2
    newest = max(slots(tmp_path), key=lambda p: struct.unpack("<Q", p.read_bytes()[16:24]))
    data = bytearray(newest.read_bytes())
    data[-1] ^= 0x01
    newest.write_bytes(bytes(data))
    d2 = daemon(daemon_cfg(tmp_path), name="second")
    d2.wait_log(m2k.line(f"spool: {newest}: bad checksum (a save cut short): the state saved "
                         "before it is used", level="warn"), since=0)  # a start-up line
    cl = Raw(d2.port).connect("torn", clean=False, session_present=True, keepalive=0)
    exchange(cl, b"x", 3, dup=True)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 2)
    assert sorted(r.value for r in recs) == [b"x", b"y"]


def test_state_file_before_the_slots_is_read_then_removed(daemon, mock_kafka, tmp_path):
    """The file `state` a daemon before the slots wrote (the same payload in
    a version 1 frame): read when no slot is, removed by the first save."""
    first_run(tmp_path, mock_kafka, "legacy", 3, b"x", how="term")[2]()
    payload = newest_payload(tmp_path)
    legacy = slots(tmp_path)[0].parent / "state"
    for p in slots(tmp_path):
        p.unlink()
    legacy.write_bytes(b"M2KT" + struct.pack("<III", 1, len(payload), crc32c(payload)) + payload)
    d2 = daemon(daemon_cfg(tmp_path), name="second")
    d2.wait_log(m2k.line("spool: restored 1 sessions with 1 QoS 2 ids awaiting PUBREL "
                         "(0 not restored)", level="info"), since=0)  # a start-up line
    cl = Raw(d2.port).connect("legacy", clean=False, session_present=True, keepalive=0)
    exchange(cl, b"x", 3, dup=True)  # PUBCOMP after a save: the old file is gone
    assert not legacy.exists()
    assert slots(tmp_path)
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"x"]


def test_qos2_id_acked_directly_in_outage_mode_survives_sigkill(daemon, mock_kafka, tmp_path):
    """mode outage with Kafka up: the record goes to Kafka directly and PUBREC
    follows its delivery report; the id is saved before that PUBREC too."""
    d1 = m2k.Daemon(tmp_path, mock_kafka.bootstrap, daemon_cfg(tmp_path, "outage"),
                    name="first")  # SIGKILLed: not the fixture's
    try:
        cl = Raw(d1.port).connect("direct", clean=False, keepalive=0)
        cl.send(publish("test/q2", b"direct", qos=2, pid=11))
        cl.expect(m2k.pubrec(11), timeout=10)
    finally:
        d1.proc.kill()
        d1.proc.wait(10)
        d1._log.close()
    d2 = daemon(daemon_cfg(tmp_path, "outage"), name="second")
    d2.wait_log(m2k.line("spool: restored 1 sessions with 1 QoS 2 ids awaiting PUBREL "
                         "(0 not restored)", level="info"), since=0)  # a start-up line
    cl = Raw(d2.port).connect("direct", clean=False, session_present=True, keepalive=0)
    cl.send(publish("test/q2", b"direct", qos=2, pid=11, dup=True))
    cl.expect(m2k.pubrec(11))
    cl.send(m2k.pubrel(11))
    cl.expect(m2k.pubcomp(11))
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"direct"]


def metrics_port(d):
    m = d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, "
                            r"/healthz, /readyz\)", level="info", regex=True),
                   since=0)  # a start-up line
    return int(m.group(1))


def reused_after_pubcomp_then_sigkill(tmp_path, mock_kafka, client_id, old, new):
    """A first daemon, every broker down and a spool of 4096 bytes: id 7
    carries `old` (PUBREC, PUBREL, PUBCOMP), then the client reuses id 7
    for `new`, which the full spool refuses (no PUBREC); SIGKILL."""
    mock_kafka.cmd("down -1")
    cfg = m2k.merge(daemon_cfg(tmp_path), {"spool": {"max_bytes": 4096},
                                           "metrics": {"listen": "127.0.0.1:0"}})
    d1 = m2k.Daemon(tmp_path, mock_kafka.bootstrap, cfg, name="first")  # SIGKILLed
    try:
        mport = metrics_port(d1)
        cl = Raw(d1.port).connect(client_id, clean=False, keepalive=0)
        exchange(cl, old, 7)  # PUBCOMP once the state without id 7 is on disk
        # Too large for what is left of max_bytes: not taken, not acked.
        cl.send(publish("test/q2", new, qos=2, pid=7))
        m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_spool_full_total"] >= 1, 10,
                       "the new message refused by the full spool")
    finally:
        d1.proc.kill()
        d1.proc.wait(10)
        d1._log.close()
    mock_kafka.cmd("up -1")


@pytest.mark.parametrize("new", [b"N" * 8000, b"S" * 2500], ids=["another", "the same"])
def test_released_id_reused_then_sigkill_the_resend_reaches_kafka(daemon, mock_kafka, tmp_path,
                                                                  new):
    """PUBCOMP for id 7 went out only once a state file without id 7 was on
    disk, so the next daemon restores nothing for the client, and the resend
    (DUP 1) of the new message under id 7 is produced, whether it differs
    from the released one or is the same topic and payload (which the hash
    alone could not tell from a resend of the old one)."""
    old = b"S" * 2500 if new == b"S" * 2500 else b"old"
    reused_after_pubcomp_then_sigkill(tmp_path, mock_kafka, "reuse7", old, new)
    d2 = daemon(daemon_cfg(tmp_path), name="second")
    cl = Raw(d2.port).connect("reuse7", clean=False, session_present=False, keepalive=0)
    exchange(cl, new, 7, dup=True)
    cl.send(m2k.DISCONNECT)
    cl.close()
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 2)
    assert sorted(r.value for r in recs) == sorted([old, new])


def test_failed_state_save_holds_pubrec_and_pubcomp_until_a_save_succeeds(
        daemon, mock_kafka, tmp_path):
    """A save of the state that fails (here its slot file cannot be opened:
    a directory in its place) answers nothing: a PUBREL waits for its
    PUBCOMP and a durable QoS 2 message for its PUBREC. Logged once, counted,
    retried; once a save succeeds both go out."""
    d = daemon(m2k.merge(daemon_cfg(tmp_path), {"metrics": {"listen": "127.0.0.1:0"}}))
    mport = metrics_port(d)
    cl = Raw(d.port).connect("faildisk", clean=False, keepalive=0)
    cl.send(publish("test/q2", b"one", qos=2, pid=1))
    cl.expect(m2k.pubrec(1))
    home = slots(tmp_path)[0].parent  # the spool of the client's worker
    blockers = [home / "state.0", home / "state.1"]
    for b in blockers:  # a directory in each slot's place
        if b.exists():
            b.unlink()
        b.mkdir()
    mark = d.mark()
    cl.send(m2k.pubrel(1))
    spool = re.escape(str(home))
    d.wait_log(m2k.line(f"spool: saving the QoS 2 state failed: {spool}/state\\.[01]: cannot "
                        r"open: Is a directory \(0 PUBRECs and 1 PUBCOMPs wait; retried\)",
                        level="error", regex=True), since=mark)
    cl.send(publish("test/q2", b"two", qos=2, pid=2))
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_spool_records_spooled_total"] >= 2, 10,
                   "the second message synced in the spool")
    failures = scrape(mport)["mqtt2kafka_spool_state_save_failures_total"]
    m2k.wait_until(
        lambda: scrape(mport)["mqtt2kafka_spool_state_save_failures_total"] > failures, 10,
        "a save holding the second message's id tried and failed")
    assert cl.nothing_within(0.2)  # neither PUBCOMP 1 nor PUBREC 2
    for b in blockers:
        b.rmdir()
    cl.expect(m2k.pubcomp(1) + m2k.pubrec(2))
    d.wait_log(m2k.line(r"spool: the QoS 2 state is saved again \(after \d+ failed saves\)",
                        level="info", regex=True), since=mark)
    assert d.log(mark).count("spool: saving the QoS 2 state failed") == 1
    cl.send(m2k.pubrel(2))
    cl.expect(m2k.pubcomp(2))
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 2)
    assert [r.value for r in recs] == [b"one", b"two"]


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_state_file_without_hashes_is_ignored_and_logged(daemon, mock_kafka, tmp_path):
    """The payload of the version before the hashes (client id, ids only),
    framed right: its ids cannot be matched to a message, so none is kept."""
    payload = struct.pack("<H", 5) + b"olddv" + struct.pack("<HH", 1, 4)
    first_run(tmp_path, mock_kafka, "frame", 3, b"x", how="term")[2]()
    for p in slots(tmp_path):
        p.unlink()
    state = tmp_path / "spool" / "state"  # the frame of the daemons before the slots
    state.write_bytes(b"M2KT" + struct.pack("<III", 1, len(payload), crc32c(payload)) + payload)
    d2 = daemon(daemon_cfg(tmp_path), name="second")
    d2.wait_log(m2k.line("spool: the QoS 2 state is not of this version: its ids are ignored "
                         "(a resend of those messages goes to Kafka again)", level="error"),
                since=0)  # a start-up line
    Raw(d2.port).connect("olddv", clean=False, session_present=False, keepalive=0)
