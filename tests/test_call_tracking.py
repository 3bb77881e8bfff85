"""Call tracking: a number per ad in [sources.numbers]; a call to it lands with that ad's UTM marks, through
the real webhook endpoint and a real worker, for Mango, Zadarma and a generic PBX."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from connectors.zadarma import signature
from hub.config import load_config
from hub.errors import ConfigError
from hub.pipeline.worker import Worker
from hub.store.db import transaction
from hub.store.models import Lead, Touch
from tests.conftest import FIXTURES, fixture_bytes

ZADARMA_SECRET = "zadarma-secret-1"
GENERIC = {"secret": "generic-secret-1", "signature_header": "X-Signature", "id_path": "call.id",
           "caller_path": "call.from", "called_path": "call.to", "status_path": "call.result"}
# Keys written the ways people write them: normalised at load, as the PBX's "74951234567" is.
TRACKED = f'''
[[sources]]
name = "mango"
connector = "mango"
api_key = "mango-api-key-1"
api_salt = "mango-salt-1"
[sources.numbers]
"+7 495 123-45-67" = {{ utm_source = "yandex", utm_campaign = "kitchens" }}
"+74957654321" = {{ utm_source = "avito" }}

[[sources]]
name = "zadarma"
connector = "zadarma"
secret = "{ZADARMA_SECRET}"
mapping = "zadarma_with_marks"
[sources.numbers]
"8 (495) 111-22-33" = {{ utm_source = "avito", utm_campaign = "sofas" }}

[[sources]]
name = "pbx"
connector = "telephony_generic"
{chr(10).join(f"{k} = {json.dumps(v)}" for k, v in GENERIC.items())}
[sources.numbers]
"74951112233" = {{ utm_source = "2gis", utm_medium = "catalog" }}
'''
# A deployment's own Zadarma mapping that also reads utm_* fields a PBX may add to its events.
ZADARMA_WITH_MARKS = (FIXTURES.parent.parent / "mappings" / "zadarma.toml").read_text().replace(
    "from_fields = false", "from_fields = true")


@pytest.fixture
def hub(write_config, tmp_path):
    from hub.runtime import Hub

    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "zadarma_with_marks.toml").write_text(ZADARMA_WITH_MARKS, encoding="utf-8")
    h = Hub(load_config(write_config(TRACKED)))
    yield h
    h.dispose()


def marks(hub, phone: str) -> dict[str, str]:
    """The UTM marks of the newest touch of the lead whose caller this is."""
    with transaction(hub.engine, read_only=True) as s:
        touch = s.scalars(select(Touch).where(Touch.contacts.is_not(None)).order_by(Touch.id.desc())).all()
        touch = next(t for t in touch if any(c.get("value") == phone for c in t.contacts))
        return {k: v for k in ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
                if (v := getattr(touch, k))}


def zadarma_call(client, caller: str, called: str, **extra: str):
    fields = {"event": "NOTIFY_START", "call_start": "2026-11-23 10:15:00", "pbx_call_id": f"in_{caller}",
              "caller_id": caller, "called_did": called, **extra}
    return client.post("/hooks/zadarma", data=urlencode(fields), content_type="application/x-www-form-urlencoded",
                       headers={"Signature": signature(ZADARMA_SECRET, fields)})


def test_a_mango_call_to_a_tracked_number_carries_its_ads_marks(hub, client):
    reply = client.post("/hooks/mango/events/summary", data=fixture_bytes("mango", "summary_missed_call.txt").strip(),
                        content_type="application/x-www-form-urlencoded")
    assert reply.status_code == 200
    Worker(hub).drain()
    assert marks(hub, "+79161234567") == {"utm_source": "yandex", "utm_campaign": "kitchens"}
    with transaction(hub.engine, read_only=True) as s:
        assert s.scalars(select(Lead.utm_campaign)).one() == "kitchens"       # the lead's campaign, for reports


def test_a_zadarma_call_to_a_tracked_number_carries_its_ads_marks(hub, client):
    reply = client.post("/hooks/zadarma", data=fixture_bytes("zadarma", "notify_start.txt").strip(),
                        content_type="application/x-www-form-urlencoded",
                        headers={"Signature": fixture_bytes("zadarma", "notify_start.signature").decode().strip()})
    assert reply.status_code == 200
    Worker(hub).drain()
    assert marks(hub, "+79035556677") == {"utm_source": "avito", "utm_campaign": "sofas"}


def test_a_generic_pbx_call_to_a_tracked_number_carries_its_ads_marks(hub, client):
    reply = client.post("/hooks/pbx", data=fixture_bytes("telephony_generic", "call_missed.json").strip(),
                        content_type="application/json",
                        headers={"X-Signature": fixture_bytes("telephony_generic", "call_missed.signature")
                                 .decode().strip()})
    assert reply.status_code == 200
    Worker(hub).drain()
    assert marks(hub, "+79125554433") == {"utm_source": "2gis", "utm_medium": "catalog"}


def test_an_untracked_number_gets_no_marks_and_the_tracking_number_beats_the_payloads(hub, client):
    assert zadarma_call(client, "79035550001", "74959998877").status_code == 200             # the office line
    assert zadarma_call(client, "79035550002", "74959998877", utm_source="pbx-session").status_code == 200
    assert zadarma_call(client, "79035550003", "74951112233", utm_source="pbx-session",
                        utm_term="sofa").status_code == 200
    Worker(hub).drain()
    assert marks(hub, "+79035550001") == {}
    assert marks(hub, "+79035550002") == {"utm_source": "pbx-session"}          # untracked: the payload's stay
    assert marks(hub, "+79035550003") == {"utm_source": "avito", "utm_campaign": "sofas"}     # all of them replaced


def test_a_bad_tracking_number_fails_the_config_load_saying_which(write_config):
    path = write_config('''
        [[sources]]
        name = "mango"
        connector = "mango"
        api_key = "k"
        api_salt = "s"
        [sources.numbers]
        "+7 495 123-45-67" = { utm_source = "yandex" }
        "call us" = { utm_source = "avito" }
        "12345" = { utm_source = "avito" }
        "8 495 1234567" = { utm_source = "vk" }
    ''')
    with pytest.raises(ConfigError) as error:
        load_config(path)
    problems = [p for p in error.value.problems if ".numbers" in p]
    assert len(problems) == 3, problems
    assert problems[0] == ("sources[2].numbers: 'call us' is not a phone number (The string supplied did not "
                           'seem to be a phone number): write it with its country code, e.g. "+7 495 123-45-67"')
    assert problems[1].startswith("sources[2].numbers: '12345' is not a phone number (no such number in its "
                                  "country (one without a country code is read as RU))")
    assert problems[2] == "sources[2].numbers: '8 495 1234567' is +74951234567 again, listed twice"


def test_marks_other_than_utm_are_refused(write_config):
    path = write_config('[[sources]]\nname = "pbx"\nconnector = "telephony_generic"\n'
                        '[sources.numbers]\n"+74951234567" = { campaign = "kitchens" }\n')
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "sources[2].numbers.+74951234567.campaign.[key]: Input should be 'utm_source', 'utm_medium', " \
           "'utm_campaign', 'utm_content' or 'utm_term'" in error.value.problems
