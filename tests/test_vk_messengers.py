"""VK through vk-api, against a local fake VK (tests/helpers/fake_vk.py): the sender is named from users.get
(cached, off the request path, never holding a lead up), shop orders and product cards reach the touch, the
Bots Long Poll runs through the library with the hub owning the cursor, and VkClient sorts VK's errors."""

from __future__ import annotations

import json
import logging
import time

import pytest
from sqlalchemy import select

import hub.intake.polling as polling
from hub.config import load_config
from hub.pipeline import vk_profiles
from hub.pipeline.worker import Worker
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.models import Lead, PollState, VkProfile
from hub.store.serialize import lead_to_dict
from hub.vk_api_client import VkClient, VkError
from hub.web.app import create_app
from tests.conftest import FIXTURES
from tests.helpers.db import events
from tests.helpers.fake_vk import FakeVk

CALLBACK_SOURCE = '''
[[sources]]
name = "vk"
connector = "vk"
secret = "vk-secret-123"
confirmation = "a1b2c3d4"
group_id = 218000111
{settings}
'''


@pytest.fixture(autouse=True)
def fresh_lookups():
    vk_profiles.reset()
    yield
    vk_profiles.reset()


def vk_hub(write_config, fake_vk: FakeVk, with_token: bool = True) -> Hub:
    settings = f'access_token = "{fake_vk.token}"\napi_url = "{fake_vk.api_url}"' if with_token else ""
    return Hub(load_config(write_config(CALLBACK_SOURCE.format(settings=settings))))


def payload(name: str, **changes) -> dict:
    data = json.loads((FIXTURES / "vk" / name).read_text())
    data.update(changes)
    return data


def post(hub: Hub, body: dict):
    resp = create_app(hub=hub).test_client().post("/hooks/vk", data=json.dumps(body, ensure_ascii=False),
                                                  content_type="application/json")
    assert resp.status_code == 200 and resp.get_data(as_text=True) == "ok"
    return resp


def lead_of(hub: Hub, vk_id: str) -> dict:
    with transaction(hub.engine, read_only=True) as s:
        for lead in s.scalars(select(Lead)):
            found = lead_to_dict(lead)
            if found["messengers"].get("vk") == vk_id:
                return found
    raise AssertionError(f"no lead of VK user {vk_id}")


def test_a_vk_message_names_the_lead_with_the_senders_name_and_city(write_config, fake_vk, runner):
    fake_vk.add_user(512345679, "Иван", "Смирнов", city="Казань")
    hub = vk_hub(write_config, fake_vk)
    post(hub, payload("message_new.json"))
    assert fake_vk.calls_to("users.get") == []          # the webhook's answer never waits for VK
    Worker(hub).drain()
    [lead] = json.loads(runner("leads", "list", "--json").output)
    assert lead["name"] == "Иван Смирнов" and lead["phones"] == ["+79031234567"]
    touch = lead_of(hub, "512345679")["last_touch"]
    assert touch["message"].endswith("\ncity: Казань") and touch["message"].startswith("Здравствуйте!")
    [call] = fake_vk.calls_to("users.get")
    assert call.params["user_ids"] == "512345679" and call.params["fields"] == "city"
    with transaction(hub.engine, read_only=True) as s:
        cached = s.get(VkProfile, 512345679)
    assert (cached.name, cached.city) == ("Иван Смирнов", "Казань")
    [stored] = events(hub)
    assert vk_profiles.PROFILE_KEY not in stored.payload        # the profile lives in its cache, not the event
    hub.dispose()


def test_a_cached_profile_makes_no_second_call_and_a_batch_asks_once(write_config, fake_vk):
    fake_vk.add_user(512345679, "Иван", "Смирнов")
    fake_vk.add_user(512345680, "Ольга", "Ким", city="Тверь")
    hub = vk_hub(write_config, fake_vk)
    post(hub, payload("message_new.json"))
    post(hub, payload("message_new_no_phone.json"))
    Worker(hub).drain()
    [call] = fake_vk.calls_to("users.get")                   # both senders, one call
    assert sorted(call.params["user_ids"].split(",")) == ["512345679", "512345680"]
    post(hub, payload("message_new.json", event_id="again-1"))   # the same client writes again
    Worker(hub).drain()
    assert len(fake_vk.calls_to("users.get")) == 1
    assert lead_of(hub, "512345680")["name"] == "Ольга Ким"
    assert lead_of(hub, "512345679")["touch_count"] == 2
    hub.dispose()


def test_a_stale_profile_is_asked_again(write_config, fake_vk):
    fake_vk.add_user(512345680, "Ольга", "Ким-Петрова")
    hub = vk_hub(write_config, fake_vk)
    with transaction(hub.engine) as s:
        s.add(VkProfile(user_id=512345680, name="Ольга Ким", city=None,
                        fetched_at=vk_profiles.utcnow() - vk_profiles.PROFILE_MAX_AGE * 2))
    post(hub, payload("message_new_no_phone.json"))
    Worker(hub).drain()
    assert len(fake_vk.calls_to("users.get")) == 1
    assert lead_of(hub, "512345680")["name"] == "Ольга Ким-Петрова"
    hub.dispose()


def test_a_stale_profile_still_names_the_lead_while_vk_is_down(write_config, fake_vk):
    hub = vk_hub(write_config, fake_vk)
    with transaction(hub.engine) as s:
        s.add(VkProfile(user_id=512345680, name="Ольга Ким", city="Тверь",
                        fetched_at=vk_profiles.utcnow() - vk_profiles.PROFILE_MAX_AGE * 2))
    fake_vk.fail("users.get", code=10)
    post(hub, payload("message_new_no_phone.json"))
    Worker(hub).drain()
    lead = lead_of(hub, "512345680")
    assert lead["name"] == "Ольга Ким" and lead["last_touch"]["message"].endswith("city: Тверь")
    assert len(fake_vk.calls_to("users.get")) == 1
    hub.dispose()


def test_forgetting_the_person_drops_their_cached_profile(write_config, fake_vk):
    from hub.pipeline.persons import forget_person
    from hub.store.models import Person

    fake_vk.add_user(512345680, "Ольга", "Ким", city="Тверь")
    hub = vk_hub(write_config, fake_vk)
    post(hub, payload("message_new_no_phone.json"))
    Worker(hub).drain()
    lead = lead_of(hub, "512345680")
    with transaction(hub.engine, read_only=True) as s:
        assert s.get(VkProfile, 512345680).name == "Ольга Ким"
    with transaction(hub.engine) as s:
        forget_person(s, s.get(Person, s.get(Lead, lead["id"]).person_id), "admin")
    with transaction(hub.engine, read_only=True) as s:
        assert s.get(VkProfile, 512345680) is None
    hub.dispose()


def test_vk_down_the_lead_still_arrives_unnamed_quickly(write_config, fake_vk, monkeypatch, caplog):
    monkeypatch.setattr(vk_profiles, "LOOKUP_TIMEOUT_SECONDS", 0.5)
    fake_vk.add_user(512345679, "Иван", "Смирнов")
    fake_vk.fail("users.get", delay=3)                     # VK hangs
    hub = vk_hub(write_config, fake_vk)
    post(hub, payload("message_new.json"))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="hub.pipeline.vk_profiles"):
        Worker(hub).drain()
    assert time.monotonic() - started < 2.5
    lead = lead_of(hub, "512345679")
    assert lead["name"] is None and lead["phones"] == ["+79031234567"]
    assert "leads go on unnamed" in caplog.text and fake_vk.token not in caplog.text
    # While VK is paused after the failure, the next leads do not wait for it at all.
    post(hub, payload("message_new_no_phone.json"))
    started = time.monotonic()
    Worker(hub).drain()
    assert time.monotonic() - started < 0.5 and len(fake_vk.calls_to("users.get")) == 1
    assert lead_of(hub, "512345680")["name"] is None
    hub.dispose()


def test_a_revoked_token_says_so_and_names_nothing(write_config, fake_vk, caplog):
    fake_vk.add_user(512345679, "Иван", "Смирнов")
    hub = vk_hub(write_config, fake_vk)
    configured = fake_vk.token
    fake_vk.token = "vk1.a.another-token-0000000000"        # VK no longer knows the source's token
    post(hub, payload("message_new.json"))
    with caplog.at_level(logging.WARNING, logger="hub.pipeline.vk_profiles"):
        Worker(hub).drain()
    assert lead_of(hub, "512345679")["name"] is None
    assert "error 5" in caplog.text and "check the source's access_token" in caplog.text
    assert configured not in caplog.text
    hub.dispose()


def test_without_a_token_vk_is_never_asked(write_config, fake_vk):
    hub = vk_hub(write_config, fake_vk, with_token=False)
    post(hub, payload("message_new.json"))
    Worker(hub).drain()
    assert lead_of(hub, "512345679")["name"] is None and fake_vk.calls == []
    hub.dispose()


def test_a_lead_form_name_wins_over_the_profile(write_config, fake_vk):
    fake_vk.add_user(512345678, "Петя", "Иванов", city="Москва")
    hub = vk_hub(write_config, fake_vk)
    post(hub, payload("lead_forms_new.json"))
    Worker(hub).drain()
    lead = lead_of(hub, "512345678")
    assert lead["name"] == "Пётр" and lead["last_touch"]["message"] == "вечер"
    assert len(fake_vk.calls_to("users.get")) == 1
    hub.dispose()


def test_a_shop_order_reaches_the_lead_with_its_products(write_config, fake_vk):
    fake_vk.add_user(512345681, "Маша", "Соколова", city="Казань")
    hub = vk_hub(write_config, fake_vk)
    post(hub, payload("market_order_new.json"))
    Worker(hub).drain()
    lead = lead_of(hub, "512345681")
    assert lead["name"] == "Мария Соколова"                  # what the buyer typed, not the profile's
    assert lead["phones"] == ["+79175554433"]
    message = lead["last_touch"]["message"]
    assert message.splitlines() == ["VK shop order 512345681-42", "Чайник керамический — 1 990 ₽ × 2",
                                    "Чай улун, 100 г — 610 ₽", "total: 4 590 ₽",
                                    "delivery: Казань, ул. Баумана, 12", "comment: Позвоните перед доставкой",
                                    "city: Казань"]
    hub.dispose()


def test_a_message_about_a_product_card_puts_the_product_on_the_touch(write_config, fake_vk):
    fake_vk.add_user(512345682, "Анна", "Орлова")
    hub = vk_hub(write_config, fake_vk)
    post(hub, payload("message_new_product.json"))
    Worker(hub).drain()
    lead = lead_of(hub, "512345682")
    assert lead["name"] == "Анна Орлова"
    assert lead["last_touch"]["message"] == "Здравствуйте, этот есть в наличии?\nproduct: Чайник керамический — 1 990 ₽"
    hub.dispose()


# -- the long poll, through vk_api's VkBotLongPoll ---------------------------------------------------------

def longpoll_hub(write_config, fake_vk: FakeVk) -> Hub:
    return Hub(load_config(write_config(f'''
        [[sources]]
        name = "vkpoll"
        connector = "vk_longpoll"
        access_token = "{fake_vk.token}"
        group_id = 218000111
        api_url = "{fake_vk.api_url}"
        wait_seconds = 0
        ''')))


def cursor(hub: Hub) -> dict:
    with transaction(hub.engine, read_only=True) as s:
        row = s.get(PollState, "vkpoll")
        return dict(row.state) if row else {}


def test_long_poll_moves_its_cursor_only_after_the_events_are_stored(write_config, fake_vk, monkeypatch):
    fake_vk.add_user(512345679, "Иван", "Смирнов")
    hub = longpoll_hub(write_config, fake_vk)
    source = hub.sources["vkpoll"]
    assert polling.poll_source(hub, source).fetched == 0
    assert cursor(hub)["ts"] == "100" and cursor(hub)["key"] == fake_vk.key
    fake_vk.push(payload("message_new.json"), payload("lead_forms_new.json"))

    def refuse(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(polling, "prepare_event", refuse)       # storing fails after VK gave the events
    with pytest.raises(RuntimeError):
        polling.poll_source(hub, source)
    assert cursor(hub)["ts"] == "100" and events(hub) == []    # nothing stored, so the cursor stayed
    monkeypatch.undo()

    report = polling.poll_source(hub, source)                  # the same events, asked again from ts 100
    assert (report.fetched, report.stored) == (2, 2) and cursor(hub)["ts"] == "102"
    assert all(vk_profiles.PROFILE_KEY not in e.payload for e in events(hub))     # the name is never stored raw
    Worker(hub).drain()
    assert lead_of(hub, "512345679")["name"] == "Иван Смирнов"
    hub.dispose()


def test_long_poll_follows_failed_1_and_3(write_config, fake_vk):
    hub = longpoll_hub(write_config, fake_vk)
    source = hub.sources["vkpoll"]
    polling.poll_source(hub, source)
    fake_vk.push(payload("message_new.json"))
    fake_vk.oldest_ts = fake_vk.ts              # VK dropped what the hub had not read yet: failed 1
    report = polling.poll_source(hub, source)
    assert report.fetched == 0 and report.error is None and cursor(hub)["ts"] == "101"
    old_key = cursor(hub)["key"]
    fake_vk.lp_fail(3)                           # the key and the ts have expired
    fake_vk.push(payload("message_new_no_phone.json"))
    assert polling.poll_source(hub, source).fetched == 0
    assert cursor(hub)["key"] != old_key and cursor(hub)["key"] == fake_vk.key and cursor(hub)["ts"] == "102"
    fake_vk.push(payload("lead_forms_new.json"))
    assert polling.poll_source(hub, source).stored == 1
    assert len(fake_vk.calls_to("groups.getLongPollServer")) == 2
    hub.dispose()


def test_long_poll_with_a_bad_token_says_what_to_fix(write_config, fake_vk):
    hub = longpoll_hub(write_config, fake_vk)
    fake_vk.token = "vk1.a.another-token-0000000000"
    report = polling.poll_source(hub, hub.sources["vkpoll"])
    assert "error 5" in report.error and "check access_token" in report.error
    assert hub.sources["vkpoll"].connector.settings.access_token not in report.error
    hub.dispose()


# -- VkClient: the door helper "answer" uses for messages.send ---------------------------------------------

@pytest.mark.parametrize("code, retriable", [(6, True), (9, True), (10, True), (5, False), (15, False),
                                             (901, False), (902, False)])
def test_vk_errors_are_sorted_into_retriable_or_not(fake_vk, code, retriable):
    fake_vk.fail("messages.send", code=code)
    with pytest.raises(VkError) as caught:
        VkClient(fake_vk.token, fake_vk.api_url).send_message(512345679, "Здравствуйте", random_id=7)
    assert caught.value.retriable is retriable and f"error {code}" in caught.value.message
    assert fake_vk.token not in caught.value.message and fake_vk.sent == []


def test_vk_unreachable_or_failing_http_is_retriable(fake_vk):
    fake_vk.fail("users.get", status=502)
    with pytest.raises(VkError) as caught:
        VkClient(fake_vk.token, fake_vk.api_url).users_get([1])
    assert caught.value.retriable and "HTTP 502" in caught.value.message
    with pytest.raises(VkError) as caught:
        VkClient(fake_vk.token, "http://127.0.0.1:9/method", timeout=0.5).users_get([1])
    assert caught.value.retriable and "unreachable" in caught.value.message


def test_send_message_is_sent_once_for_one_random_id(fake_vk):
    client = VkClient(fake_vk.token, fake_vk.api_url)
    first = client.send_message(512345679, "Заявка принята", random_id=41)
    assert client.send_message(512345679, "Заявка принята", random_id=41) == first     # a retry
    assert [(m["peer_id"], m["message"]) for m in fake_vk.sent] == [("512345679", "Заявка принята")]
