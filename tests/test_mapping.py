"""The site_form mapping: which fields become what, and what is refused."""

from __future__ import annotations

import json

import pytest

from hub.errors import PayloadError
from hub.mapping import apply_mapping, load_mapping
from tests.conftest import fixture_bytes

SITE = load_mapping("site_form")


def test_landing_page_fixture():
    draft = apply_mapping(SITE, json.loads(fixture_bytes("site_form", "landing_json.json")))
    assert draft.name == "Ivan Petrov"
    assert draft.phones == ["8 (912) 345-67-89"]
    assert draft.emails == ["IVAN.PETROV@gmail.com"]
    assert draft.message == "Where do I pay for the annual plan?"
    assert draft.utm == {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "brand"}
    assert draft.click_ids == {"gclid": "abc"}
    assert draft.referrer == "https://www.google.com/"
    assert draft.external_id is None


def test_explicit_utm_fields_win_over_the_page_url():
    draft = apply_mapping(SITE, {"phone": "89123456789", "utm_source": "yandex", "utm_term": "купить тур",
                                 "page_url": "https://x.ru/?utm_source=google&utm_medium=cpc"})
    assert draft.utm == {"utm_source": "yandex", "utm_term": "купить тур", "utm_medium": "cpc"}


def test_russian_field_names_case_insensitive_and_several_phones():
    draft = apply_mapping(SITE, {"ИМЯ": "Анна", "Телефон": ["+7 912 000-00-01", ""], "Phone2": "8 912 000 00 02",
                                 "Комментарий": "Перезвоните", "Страница": "https://x.ru/a?UTM_SOURCE=vk"})
    assert draft.name == "Анна"
    assert draft.phones == ["+7 912 000-00-01", "8 912 000 00 02"]
    assert draft.message == "Перезвоните"
    assert draft.utm == {"utm_source": "vk"}


def test_a_lead_with_just_an_email_is_enough():
    assert apply_mapping(SITE, {"email": "a@b.ru"}).emails == ["a@b.ru"]


@pytest.mark.parametrize("fields", [{}, {"name": "Ivan"}, {"phone": "   "}, {"phone": None, "email": {"x": 1}}])
def test_no_contact_is_refused_with_the_fields_we_looked_for(fields):
    with pytest.raises(PayloadError, match="no phone, e-mail or messenger id \\(looked for fields: phone, tel"):
        apply_mapping(SITE, fields)


@pytest.mark.parametrize("payload", [None, [], "text", 42])
def test_a_payload_that_is_not_an_object_is_a_payload_error(payload):
    with pytest.raises(PayloadError):
        apply_mapping(SITE, payload)


def test_huge_values_are_clipped_and_flagged():
    draft = apply_mapping(SITE, {"phone": "89123456789", "name": "Я" * 10_000, "message": "x" * 50_000})
    assert len(draft.name) == 255 and len(draft.message) == 10_000
    assert {"name_truncated", "message_truncated"} <= set(draft.flags)


def test_form_id_field_becomes_the_external_id():
    assert apply_mapping(SITE, {"phone": "89123456789", "request_id": 123}).external_id == "123"


def test_utm_from_tildas_cookie_decoded_twice():
    from urllib.parse import parse_qs

    from hub.mapping import Mapping

    mapping = Mapping.model_validate({"fields": {"name": ["Name"], "phone": ["Phone"], "email": ["Email"],
                                                 "external_id": ["tranid"]},
                                      "utm": {"from_tilda_cookie": ["COOKIES"]}})
    form = {k: v[0] for k, v in parse_qs(fixture_bytes("tilda", "form_with_cookie_utm.txt").decode()).items()}
    draft = apply_mapping(mapping, form)
    assert draft.utm == {"utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "autumn_sale",
                         "utm_content": "banner_2", "utm_term": "купить тур"}
    assert draft.name == "Анна Смирнова" and draft.external_id == "4567890:1234567"


def test_utm_from_a_deep_link_payload_map():
    from hub.mapping import Mapping

    mapping = Mapping.model_validate({"fields": {"telegram_id": ["user"]}, "utm": {
        "payload_field": "start", "payload_map": {"autumn_vk": {"utm_source": "vk", "utm_campaign": "autumn"}}}})
    assert apply_mapping(mapping, {"user": 1, "start": "autumn_vk"}).utm == {"utm_source": "vk",
                                                                            "utm_campaign": "autumn"}
    unknown = apply_mapping(mapping, {"user": 1, "start": "new_link_7"})
    assert unknown.utm == {"utm_campaign": "new_link_7"} and "unmapped_payload" in unknown.flags
    assert apply_mapping(mapping, {"user": 1}).utm == {}
