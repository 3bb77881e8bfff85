"""Telegram getUpdates and VK Bots Long Poll, through their libraries, against local fake Bot API and VK servers."""

from __future__ import annotations

import json

from hub.config import load_config
from hub.pipeline.worker import Worker
from hub.runtime import Hub
from tests.conftest import FIXTURES
from tests.helpers.db import events

TOKEN = "123456789:AAF-test-token-not-real"


def fixture(connector: str, name: str) -> dict:
    return json.loads((FIXTURES / connector / name).read_text())


def tg_hub(write_config, fake_telegram) -> Hub:
    return Hub(load_config(write_config(f'[[sources]]\nname = "bot"\nconnector = "telegram_polling"\n'
                                        f'bot_token = "{TOKEN}"\napi_url = "{fake_telegram.url}"\n')))


def test_telegram_polling_stores_then_answers_and_advances_the_offset(write_config, runner, fake_telegram):
    """Through python-telegram-bot against a local fake Bot API: the stored offset drives getUpdates."""
    hub = tg_hub(write_config, fake_telegram)
    for name in ("start_deeplink.json", "contact_shared.json"):
        fake_telegram.push_update(fixture("telegram", name))
    assert "bot: 2 fetched, 2 new" in runner("poll").output
    [first] = fake_telegram.of("getUpdates")
    assert (first["offset"], first["timeout"], first["allowed_updates"]) == (0, 0, ["message"])
    sent = fake_telegram.of("sendMessage")
    assert len(sent) == 2
    assert sent[0]["reply_markup"]["keyboard"][0][0]["request_contact"] is True     # "share my number"
    assert sent[1]["text"].startswith("Спасибо") and sent[1]["reply_markup"] == {"remove_keyboard": True}
    assert "bot: 0 fetched, 0 new" in runner("poll").output
    assert fake_telegram.of("getUpdates")[1]["offset"] == 90000002           # past both, stored by the hub
    Worker(hub).drain()
    [lead] = json.loads(runner("leads", "list", "--json").output)
    assert lead["phones"] == ["+79261112233"] and lead["messengers"] == {"telegram": "700000001"}
    assert lead["first_touch"]["utm_campaign"] == "vk_cpc_spring" and lead["touch_count"] == 2
    hub.dispose()


def test_telegram_polling_with_a_webhook_set_says_what_to_do(write_config, runner, fake_telegram):
    hub = tg_hub(write_config, fake_telegram)
    fake_telegram.fail("getUpdates", 409, "Conflict: can't use getUpdates method while webhook is active; "
                                          "use deleteWebhook to delete the webhook first")
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
