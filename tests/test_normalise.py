"""Phones and e-mails as our users' leads really spell them."""

from __future__ import annotations

import pytest

from hub.pipeline.normalise import mask_email, mask_phone, normalise_email, normalise_phone


@pytest.mark.parametrize("raw", ["8 (912) 345-67-89", "+7 912 3456789", "89123456789", "+7(912)345-67-89",
                                 "7 912 345 67 89", "8-912-345-67-89", "810 7 912 345 67 89"])
def test_one_russian_person_however_the_phone_is_written(raw):
    assert normalise_phone(raw, "RU").value == "+79123456789"


@pytest.mark.parametrize("raw, region, expected", [
    ("8 (701) 234-56-78", "KZ", "+77012345678"),       # Kazakhstan: the same "8" trunk prefix
    ("+374 91 234567", "RU", "+37491234567"),           # Armenia, written internationally
    ("091 234567", "AM", "+37491234567"),               # Armenia, national with its "0" trunk prefix
    ("+976 8812 3456", "RU", "+97688123456"),           # Mongolia
    ("8812 3456", "MN", "+97688123456"),
])
def test_other_markets(raw, region, expected):
    assert normalise_phone(raw, region).value == expected


@pytest.mark.parametrize("raw", ["12345", "not a phone", "+7 000 000-00-00", ""])
def test_invalid_phones_are_kept_raw_with_a_reason(raw):
    result = normalise_phone(raw, "RU")
    assert result.value is None and result.raw == raw and result.problem


def test_emails_are_normalised_and_casefolded_but_not_rewritten():
    assert normalise_email(" IVAN.PETROV@gmail.com ").value == "ivan.petrov@gmail.com"
    assert normalise_email("Ivan.Petrov+ads@Gmail.com").value == "ivan.petrov+ads@gmail.com"
    assert normalise_email("Anna@Пример.РФ").value == "anna@пример.рф"


@pytest.mark.parametrize("raw", ["ivan@", "no at sign", "two@@example.com", "a@b"])
def test_invalid_emails_are_kept_raw_with_a_reason(raw):
    result = normalise_email(raw)
    assert result.value is None and result.problem


def test_masks_for_logs_hide_the_middle():
    assert mask_phone("+79123456789") == "+7912***89"
    assert mask_email("ivan.petrov@gmail.com") == "i***@gmail.com"
    assert "3456" not in mask_phone("+79123456789")


# -- property: every common spelling of one number gives one E.164 key ------------------------------------

from hypothesis import assume, given, settings, strategies as st  # noqa: E402

SEPARATORS = st.sampled_from(["", " ", "-", " - ", ".", "  "])


@st.composite
def spelled_ru_mobile(draw):
    operator = draw(st.sampled_from(["900", "903", "905", "912", "916", "921", "926", "950", "977", "999"]))
    digits = operator + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=7, max_size=7)))
    prefix = draw(st.sampled_from(["+7", "8", "7", "+7 ", "8 ", "810 7 ", "+ 7"]))
    area = digits[:3]
    if draw(st.booleans()):
        area = f"({area})"
    sep = draw(SEPARATORS)
    groups = draw(st.sampled_from([[digits[3:6], digits[6:8], digits[8:]], [digits[3:]], [digits[3:6], digits[6:]]]))
    text = prefix + draw(st.sampled_from(["", " "])) + area + sep + sep.join(groups)
    padding = draw(st.sampled_from(["", " ", "\t", "  "]))
    return padding + text + padding, "+7" + digits


@given(spelled_ru_mobile())
@settings(max_examples=400, deadline=None)
def test_every_common_spelling_of_a_russian_mobile_gives_one_key(case):
    text, canonical = case
    assume(normalise_phone(canonical, "RU").value is not None)     # an allocated number, not just 10 digits
    assert normalise_phone(text, "RU").value == canonical


@st.composite
def spelled_national(draw):
    """Armenian, Kazakh and Mongolian mobiles, national or international, with the country's trunk prefix."""
    region, country, trunk, first = draw(st.sampled_from([("AM", "374", "0", "91"), ("AM", "374", "0", "77"),
                                                          ("KZ", "7", "8", "701"), ("KZ", "7", "8", "777"),
                                                          ("MN", "976", "", "88"), ("MN", "976", "", "99")]))
    length = {"AM": 8, "KZ": 10, "MN": 8}[region]
    rest = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=length - len(first),
                                 max_size=length - len(first))))
    national = first + rest
    sep = draw(SEPARATORS)
    body = sep.join([national[:2], national[2:5], national[5:]])
    text = draw(st.sampled_from([f"+{country} {body}", f"{trunk}{body}", f"+{country}{national}"]))
    return region, text, f"+{country}{national}"


@given(spelled_national())
@settings(max_examples=300, deadline=None)
def test_other_markets_spellings_give_one_key(case):
    region, text, canonical = case
    assume(normalise_phone(canonical, region).value is not None)
    assert normalise_phone(text, region).value == canonical


def test_an_extension_is_kept_beside_the_number_not_in_the_key():
    office = normalise_phone("+7 495 123-45-67 доб. 123", "RU")
    assert (office.value, office.extension) == ("+74951234567", "123")


def test_gmail_canonical_only_when_configured():
    assert normalise_email("I.van+ads@googlemail.com").value == "i.van+ads@googlemail.com"
    assert normalise_email("I.van+ads@googlemail.com", gmail_canonical=True).value == "ivan@gmail.com"
    assert normalise_email("i.van+ads@yandex.ru", gmail_canonical=True).value == "i.van+ads@yandex.ru"
