"""Group commit (hub/intake/group.py) and the fast lane (hub/web/door.py), on SQLite and PostgreSQL: every
acknowledged delivery is committed before its answer, a bad row fails only its own delivery, a duplicate
inside one batch is answered as a duplicate, and the fast lane answers as the Flask view does."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from hub.intake.group import GroupWriter
from hub.intake.webhook import _insert, insert_deliveries
from hub.store.db import insert_ignoring_conflicts, transaction
from hub.store.models import EventStatus, InboundEvent, utcnow
from tests.helpers import procs
from tests.helpers.db import count

JSON = {"Content-Type": "application/json"}


def _row(external_id: str, **more) -> dict:
    now = utcnow()
    return dict(source="site", received_at=now, method="POST", content_type="application/json",
                headers={"content-type": "application/json"}, body=b'{"phone": "+79120000000"}',
                attempts=0, next_attempt_at=now, external_id=external_id, payload={"phone": "+79120000000"},
                status=EventStatus.PENDING, **more)


def _batched(writer: GroupWriter, writes: list) -> list:
    """Run ``writes`` through ``writer`` as one batch: the first job holds the writer until all the others
    are waiting. Returns each one's result or exception, in order."""
    release = threading.Event()
    results: list = [None] * len(writes)

    def hold(session):
        release.wait(10)
        return "held"

    def submit(i: int) -> None:
        try:
            results[i] = writer.run(writes[i])
        except Exception as exc:  # noqa: BLE001 — the test looks at it
            results[i] = exc

    holder = threading.Thread(target=writer.run, args=(hold,))
    holder.start()
    while writer.jobs == 0:                     # the holder's batch has been taken
        time.sleep(0.001)
    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(writes))]
    for t in threads:
        t.start()
    while len(writer._waiting) < len(writes):
        time.sleep(0.001)
    release.set()
    holder.join()
    for t in threads:
        t.join()
    return results


def test_deliveries_waiting_together_are_one_transaction_and_each_is_committed_when_answered(hub):
    writer = GroupWriter(hub.engine)
    committed_when_answered = []

    def write(i):
        def w(session):
            return _insert(session, [_row(f"batch-{i}")])[0].id
        return w

    def check(i, ids):
        with transaction(hub.engine, read_only=True) as s:      # another connection: only what is committed
            committed_when_answered.append(s.get(InboundEvent, ids[i]) is not None)

    ids = _batched(writer, [write(i) for i in range(10)])
    assert writer.batches == 2 and writer.jobs == 11 and writer.fallbacks == 0
    for i in range(10):
        check(i, ids)
    assert all(committed_when_answered) and len(set(ids)) == 10


def test_one_bad_row_fails_only_its_own_delivery(hub):
    writer = GroupWriter(hub.engine)
    writes = [lambda s, i=i: _insert(s, [_row(f"good-{i}")])[0].id for i in range(6)]
    # A row the database refuses: NOT NULL source.
    writes.insert(3, lambda s: insert_ignoring_conflicts(s, InboundEvent.__table__, ["source", "external_id"],
                                                         {**_row("bad"), "source": None}))
    results = _batched(writer, writes)
    assert isinstance(results[3], Exception)
    good = [r for i, r in enumerate(results) if i != 3]
    assert all(isinstance(r, int) for r in good), results
    assert writer.fallbacks == 1
    with transaction(hub.engine, read_only=True) as s:
        stored = set(s.scalars(select(InboundEvent.external_id)))
    assert stored == {f"good-{i}" for i in range(6)}


def test_a_duplicate_inside_one_batch_is_answered_as_a_duplicate(hub):
    writer = GroupWriter(hub.engine)
    first, second, other = _batched(writer, [lambda s: _insert(s, [_row("same")])[0],
                                             lambda s: _insert(s, [_row("same")])[0],
                                             lambda s: _insert(s, [_row("other")])[0]])
    assert not first.duplicate and second.duplicate and not other.duplicate
    assert second.id == first.id and other.id != first.id
    assert count(hub, InboundEvent) == 2


def _one_batch_of_deliveries(writer: GroupWriter, deliveries: list[list[dict]]) -> list:
    """``deliveries`` written by the writer as one batch through insert_deliveries (as the door does): the
    writer is held busy until all are waiting. Each delivery's stored events, or its exception."""
    release = threading.Event()
    holder = threading.Thread(target=writer.run, args=(lambda session: release.wait(10),))
    holder.start()
    while writer.jobs == 0:
        time.sleep(0.001)
    futures = [writer.submit(insert_deliveries, values) for values in deliveries]
    release.set()
    holder.join()
    return [f.exception() or f.result() for f in futures]


def test_a_batch_of_deliveries_is_written_together_and_answered_each_as_its_own(hub):
    # On PostgreSQL one INSERT for the batch; on SQLite a row at a time; the answers are the same.
    with transaction(hub.engine) as s:
        earlier = _insert(s, [_row("earlier")])[0]
    writer = GroupWriter(hub.engine)
    first, again_earlier, same_again, two = _one_batch_of_deliveries(writer, [
        [_row("a")], [_row("earlier")], [_row("a")], [_row("b"), {**_row("c"), "status": EventStatus.REJECTED}]])
    assert not first[0].duplicate and first[0].status == EventStatus.PENDING
    assert again_earlier[0].duplicate and again_earlier[0].id == earlier.id
    assert same_again[0].duplicate and same_again[0].id == first[0].id
    assert [e.duplicate for e in two] == [False, False] and two[1].status == EventStatus.REJECTED
    assert writer.batches == 2 and writer.fallbacks == 0
    with transaction(hub.engine, read_only=True) as s:
        stored = dict(s.execute(select(InboundEvent.external_id, InboundEvent.id)).all())
    assert stored == {"earlier": earlier.id, "a": first[0].id, "b": two[0].id, "c": two[1].id}


def test_a_bad_row_in_a_batch_of_deliveries_fails_only_its_delivery(hub):
    writer = GroupWriter(hub.engine)
    results = _one_batch_of_deliveries(writer, [[_row("x")], [{**_row("bad"), "source": None}], [_row("y")]])
    assert isinstance(results[1], Exception) and writer.fallbacks == 1
    assert [r[0].duplicate for r in (results[0], results[2])] == [False, False]
    with transaction(hub.engine, read_only=True) as s:
        assert set(s.scalars(select(InboundEvent.external_id))) == {"x", "y"}


def test_many_concurrent_posts_make_as_many_rows_each_answered_once(app, hub):
    def post(i: int):
        with app.test_client() as c:
            return c.post("/hooks/site", json={"phone": f"+7912{i:07d}", "name": f"n{i}"})

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(post, range(200)))
    assert [a.status_code for a in answers] == [200] * 200
    ids = [a.get_json()["event_ids"][0] for a in answers]
    assert len(set(ids)) == 200 and count(hub, InboundEvent) == 200


def test_the_sqlite_cursor_insert_stores_what_the_core_statement_stores(hub):
    row = _row("cursor", reject_reason=None)
    row["headers"] = {"content-type": "application/json; charset=utf-8", "user-agent": "Мой агент/1"}
    row["payload"] = {"name": "Иван \u2028", "n": [1, 2.5, None, True], "nested": {"a": "b"}}
    row["next_attempt_at"] = row["received_at"] + timedelta(seconds=3)
    with transaction(hub.engine) as s:
        a = _insert(s, [row])[0].id
        b = insert_ignoring_conflicts(s, InboundEvent.__table__, ["source", "external_id"],
                                      {**row, "external_id": "core"})
    with transaction(hub.engine, read_only=True) as s:
        via_cursor, via_core = s.get(InboundEvent, a), s.get(InboundEvent, b)
        fields = ("source", "received_at", "method", "content_type", "headers", "body", "payload", "status",
                  "attempts", "next_attempt_at", "reject_reason")
        assert {f: getattr(via_cursor, f) for f in fields} == {f: getattr(via_core, f) for f in fields}
        raw = s.execute(select(func.count()).select_from(InboundEvent.__table__).where(
            InboundEvent.received_at == row["received_at"])).scalar_one()
    assert raw == 2         # the same text in the column: the indexes and comparisons see the same value


def _wsgi(app_callable, body: bytes, path: str = "/hooks/site") -> tuple[str, dict, bytes]:
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, dict(headers)

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json",
               "HTTP_HOST": "127.0.0.1:8000", "REMOTE_ADDR": "127.0.0.1", "wsgi.errors": io.StringIO(),
               "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.version": (1, 0)}
    out = b"".join(app_callable(environ, start_response))
    return captured["status"], captured["headers"], out


@pytest.mark.parametrize("body", [b'{"phone": "+79120000001"}', b'{"phone": ', b'{"name": "no contact"}'])
def test_the_fast_lane_answers_as_the_flask_view_does(app, body):
    door = app.wsgi_app
    fast = _wsgi(door, body)
    again_fast = _wsgi(door, body)
    flask_view = _wsgi(door.flask, body)                    # the same delivery again, through Flask
    assert fast[0] == flask_view[0] or "duplicate" in flask_view[2].decode()
    assert fast[1].keys() == flask_view[1].keys()
    for name in fast[1]:
        if name != "Content-Length":
            assert fast[1][name] == flask_view[1][name], name
    assert again_fast[1] == flask_view[1] and again_fast[2] == flask_view[2]     # both answer the retry alike


def test_every_acknowledged_delivery_survives_a_kill_right_after_its_answer(write_config):
    config = write_config()
    port = procs.free_port()
    web = procs.start("serve", "--config", str(config), "--port", str(port), "--threads", "16")
    acked: list[int] = []
    try:
        procs.wait_healthy(web, port)

        def post(i: int) -> None:
            try:
                resp = requests.post(f"http://127.0.0.1:{port}/hooks/site", timeout=10,
                                     json={"phone": f"+7915{i:07d}", "request_id": f"k-{i}"})
            except requests.RequestException:
                return                                    # not answered: the sender would retry
            if resp.status_code == 200:
                acked.append(resp.json()["event_ids"][0])
                if len(acked) == 150:
                    os.kill(web.pid, signal.SIGKILL)      # at once, with deliveries still in flight

        with ThreadPoolExecutor(24) as pool:
            list(pool.map(post, range(400)))
    finally:
        procs.stop(web)
    assert len(acked) >= 150
    from hub.config import load_config
    from hub.runtime import Hub

    hub = Hub(load_config(config))
    try:
        with transaction(hub.engine, read_only=True) as s:
            stored = set(s.scalars(select(InboundEvent.id)))
    finally:
        hub.dispose()
    assert set(acked) <= stored


def test_a_worker_beside_the_door_rests_while_deliveries_arrive(hub, monkeypatch):
    from hub.pipeline import worker as worker_module
    from hub.pipeline.worker import Worker

    w = Worker(hub, yield_to_intake=True)
    w._stop = threading.Event()
    monkeypatch.setattr(w, "run_batch", lambda: time.sleep(0.02) or 1)
    started = time.monotonic()
    w.run_batch_yielding()                                 # the door idle: no rest
    idle = time.monotonic() - started
    hub.intake_stored_at = time.monotonic()
    started = time.monotonic()
    w.run_batch_yielding()                                 # a delivery just stored: rest 3 × the batch
    busy = time.monotonic() - started
    share = worker_module.WORKER_SHARE_WHILE_INTAKE_BUSY
    assert idle < 0.02 / share * 0.8 and busy >= 0.02 / share * 0.95
