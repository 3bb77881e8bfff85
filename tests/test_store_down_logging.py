"""Security finding 8: while the store is down every delivery is answered 503 (the provider retries), but
the log gets one line per kind of failure and minute — with a count — not a traceback per request (about
94,000 lines a process in 50 s before), and no delivery's contents."""

from __future__ import annotations

import logging

from sqlalchemy import text

PHONE = "+79991112244"


def _move_table(hub, away: bool) -> None:
    names = ("inbound_event", "inbound_event_away") if away else ("inbound_event_away", "inbound_event")
    with hub.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {names[0]} RENAME TO {names[1]}"))
    hub.engine.dispose()                # no pooled connection keeps a plan of the old table


def test_a_store_that_is_down_is_logged_once_a_minute_with_a_count(hub, client, caplog):
    caplog.set_level(logging.INFO, logger="hub")
    _move_table(hub, away=True)
    try:
        answers = [client.post("/hooks/site", json={"phone": PHONE, "name": "Иван", "message": f"try {n}"}).status_code
                   for n in range(200)]
        health = [client.get("/healthz").status_code for _ in range(50)]
    finally:
        _move_table(hub, away=False)
    assert set(answers) == {503} and set(health) == {503}
    store_lines = [r for r in caplog.records if r.getMessage().startswith("storing deliveries")]
    health_lines = [r for r in caplog.records if r.getMessage().startswith("healthz: the database")]
    assert len(store_lines) == 1 and len(health_lines) == 1, [r.getMessage() for r in caplog.records]
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 2     # 250 failures, two lines
    assert store_lines[0].exc_info                        # the first one says where, once
    assert client.post("/hooks/site", json={"phone": PHONE, "name": "Иван"}).status_code == 200
    back = [r.getMessage() for r in caplog.records if "works again" in r.getMessage()]
    assert len(back) == 1 and "× 200" in back[0]
    # Nothing a client sent is in the log: the database's error text carries no statement parameters.
    logged = caplog.text
    assert PHONE not in logged and "Иван" not in logged and "try 1" not in logged
