"""Telegram getUpdates and VK Bots Long Poll, against the providers' real answer shapes (responses)."""

from __future__ import annotations

import json

import responses
from responses import matchers

from hub.config import load_config
from hub.pipeline.worker import Worker
from hub.runtime import Hub
from tests.conftest import FIXTURES
from tests.helpers.db import events

TOKEN = "123456789:AAF-test-token-not-real"
API = f"https://api.telegram.org/bot{TOKEN}"


def fixture(connector: str, name: str) -> dict:
    return json.loads((FIXTURES / connector / name).read_text())


def tg_hub(write_config) -> Hub:
    return Hub(load_config(write_config(f'[[sources]]\nname = "bot"\nconnector = "telegram_polling"\n'
                                        f'bot_token = "{TOKEN}"\n')))


@responses.activate
def test_telegram_polling_stores_then_answers_and_advances_the_offset(write_config, runner):
    hub = tg_hub(write_config)
    updates = [fixture("telegram", "start_deeplink.json"), fixture("telegram", "contact_shared.json")]
    first = responses.post(f"{API}/getUpdates", json={"ok": True, "result": updates},
                           match=[matchers.json_params_matcher({"offset": 0, "timeout": 0,
                                                                "allowed_updates": ["message"]})])
    second = responses.post(f"{API}/getUpdates", json={"ok": True, "result": []},
                            match=[matchers.json_params_matcher({"offset": 90000002, "timeout": 0,
                                                                 "allowed_updates": ["message"]})])
    sent = responses.post(f"{API}/sendMessage", json={"ok": True, "result": {}})
    assert "bot: 2 fetched, 2 new" in runner("poll").output
    assert first.call_count == 1 and sent.call_count == 2
    texts = [json.loads(c.request.body) for c in responses.calls if c.request.url.endswith("sendMessage")]
    assert texts[0]["reply_markup"]["keyboard"][0][0]["request_contact"] is True
    assert texts[1]["text"].startswith("Спасибо")
    assert "bot: 0 fetched, 0 new" in runner("poll").output
    assert second.call_count == 1
    Worker(hub).drain()
    [lead] = json.loads(runner("leads", "list", "--json").output)
    assert lead["phones"] == ["+79261112233"] and lead["messengers"] == {"telegram": "700000001"}
    assert lead["first_touch"]["utm_campaign"] == "vk_cpc_spring" and lead["touch_count"] == 2
    hub.dispose()


@responses.activate
def test_telegram_polling_with_a_webhook_set_says_what_to_do(write_config, runner):
    hub = tg_hub(write_config)
    responses.post(f"{API}/getUpdates", status=409, json={
        "ok": False, "error_code": 409, "description": "Conflict: can't use getUpdates method while webhook is active"})
    [report] = json.loads(runner("poll", "--json", expect=1).output)
    assert "this bot has a webhook set; delete it (deleteWebhook)" in report["error"]
    assert TOKEN not in report["error"] and events(hub) == []
    hub.dispose()


def vk_hub(write_config, fake_vk) -> Hub:
    return Hub(load_config(write_config(f'[[sources]]\nname = "vk"\nconnector = "vk_longpoll"\n'
                                        f'access_token = "{fake_vk.token}"\ngroup_id = 218000111\n'
                                        f'api_url = "{fake_vk.api_url}"\nwait_seconds = 0\n')))


def test_vk_long_poll_follows_ts_and_refreshes_its_key(write_config, runner, fake_vk):
    """Through vk_api's VkBotLongPoll against a local fake VK: the hub's stored cursor drives it."""
    hub = vk_hub(write_config, fake_vk)
    lead_ad = {k: v for k, v in fixture("vk", "lead_forms_new.json").items() if k != "secret"}
    message = {k: v for k, v in fixture("vk", "message_new.json").items() if k != "secret"}
    typing = {"type": "message_typing_state", "object": {}, "group_id": 218000111, "event_id": "t1"}
    assert "vk: 0 fetched, 0 new" in runner("poll").output   # a server, key and ts: from now on, as VK does
    fake_vk.push(lead_ad, typing, message)
    assert "vk: 2 fetched, 2 new" in runner("poll").output
    assert len(fake_vk.calls_to("groups.getLongPollServer")) == 1
    fake_vk.lp_fail(2)
    assert "vk: 0 fetched, 0 new" in runner("poll").output               # failed 2: a new key, same ts
    assert len(fake_vk.calls_to("groups.getLongPollServer")) == 2
    fake_vk.push(lead_ad)                                                  # VK re-sending one: stored once
    assert "vk: 1 fetched, 0 new" in runner("poll").output
    checks = fake_vk.calls_to("a_check")
    assert [c.params["ts"] for c in checks] == ["100", "100", "103", "103"]
    assert checks[-1].params["key"] == fake_vk.key and checks[0].params["wait"] == "0"
    Worker(hub).drain()
    leads = json.loads(runner("leads", "list", "--json").output)
    assert sorted(lead["phones"][0] for lead in leads) == ["+79031234567", "+79160001122"]
    hub.dispose()
