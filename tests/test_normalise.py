"""Phones and e-mails as our users' leads really spell them."""

from __future__ import annotations

import pytest

from hub.normalise import mask_email, mask_phone, normalise_email, normalise_phone


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
