"""VK communities: Callback API (Manage community → API usage → Callback API).

VK posts JSON. ``confirmation`` is answered with the configured confirmation string as plain text; every
other event is answered exactly ``ok`` — anything else and VK re-sends it (``X-Retry-Counter``) and
eventually pauses delivery. ``secret`` is compared in constant time; ``event_id`` is the external id, so a
re-sent event is stored once. Lead ads arrive as ``lead_forms_new`` (answers by key and question),
community messages as ``message_new`` (the VK user id identifies the person; a phone written in the text
is picked up; a product card attached to it is written on the touch), orders from the community's shop as
``market_order_new`` (the buyer, the products, the total and the delivery).

The sender's name and city are not in VK's events. The hub asks ``users.get`` for them (hub/pipeline/
vk_profiles.py, with ``access_token`` from these settings) before the event is processed, and hands them to
``fields`` in the payload under ``PROFILE_KEY``; a connector stays free of network calls and of the store.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field

from hub.connector import (
    InboundRequest,
    RawEvent,
    WebhookConnector,
    WebhookReply,
    WebhookResult,
    decode_body,
    parse_json,
)
from hub.errors import PayloadError, SignatureError

LEAD_EVENTS = ("lead_forms_new", "message_new", "market_order_new")
OK = WebhookReply(200, "ok")
# Where the hub puts the sender's {"name", "city"} from users.get (hub/pipeline/vk_profiles.py writes the same
# key; the hub may not import a connector, so the literal is in both places). Only ever in memory: a stored
# payload never carries it, and one that arrives with it has it replaced or removed before ``fields``.
PROFILE_KEY = "_hub_vk_profile"
# Products written on one touch (a message's cards; an order lists at most ORDER_PREVIEW_ITEMS of them).
MAX_PRODUCTS = 10
ORDER_PREVIEW_ITEMS = 5       # VK's preview_order_items: "no more than 5 random items of the order"


class VkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: str = Field(min_length=8, description="the community's Callback API secret key")
    confirmation: str = Field(min_length=1, description="the string VK asks the server to return")
    group_id: int | None = Field(None, description="if set, events of other communities are refused")
    region: str = Field("RU", description="phone region for numbers found in message text")
    access_token: str | None = Field(None, min_length=10, description="a community token (Manage community → "
                                     "API usage → Access tokens): the hub asks VK the sender's name and city, "
                                     "and answers the client; without it leads from VK are not named")
    api_url: str = Field("https://api.vk.com/method", description="the VK API's address (a proxy's, a test's)")
    api_version: str = "5.199"


def _body(request: InboundRequest) -> dict[str, Any]:
    data = parse_json(decode_body(request.body, request.charset))
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise PayloadError("not a VK Callback API event: no \"type\"", status=400)
    return data


def phones_in_text(text: str, region: str) -> list[str]:
    return [m.raw_string for m in phonenumbers.PhoneNumberMatcher(text, region)]


def _price(price: Any) -> str | None:
    """VK's price object as VK itself writes it ("1 500 ₽"), else from the amount in hundredths."""
    if not isinstance(price, dict):
        return None
    if price.get("text"):
        return str(price["text"])
    try:
        amount = int(str(price.get("amount")))
    except ValueError:
        return None
    currency = found if isinstance(found := price.get("currency"), dict) else {}
    units = str(amount // 100) if amount % 100 == 0 else f"{amount / 100:.2f}"
    return f"{units} {currency.get('name') or ''}".strip()


def _product(item: dict[str, Any], quantity: Any = None) -> str | None:
    """One product as a line: its title, its price, how many ("Чайник — 1 500 ₽ × 2")."""
    card = found if isinstance(found := item.get("item"), dict) else {}
    title = str(item.get("title") or card.get("title") or "").strip()
    if not title:
        return None
    price = _price(item.get("price")) or _price(card.get("price"))
    line = f"{title} — {price}" if price else title
    return f"{line} × {quantity}" if isinstance(quantity, int) and quantity > 1 else line


def attached_products(message: dict[str, Any]) -> list[str]:
    """The product cards (attachments of type ``market``) a client wrote about."""
    attachments = message.get("attachments")
    return [line for a in (attachments if isinstance(attachments, list) else [])
            if isinstance(a, dict) and a.get("type") == "market" and isinstance(a.get("market"), dict)
            and (line := _product(a["market"]))][:MAX_PRODUCTS]


def _lines(*parts: str | None) -> str | None:
    return "\n".join(p for p in parts if p) or None


def _order_fields(order: dict[str, Any]) -> dict[str, Any]:
    """A shop order: the buyer (who may have typed a name and phone other than their profile's), the products,
    the total, the delivery and the buyer's comment — written out as the touch's message."""
    recipient = found if isinstance(found := order.get("recipient"), dict) else {}
    delivery = found if isinstance(found := order.get("delivery"), dict) else {}
    items = order.get("preview_order_items")
    products = [line for i in (items if isinstance(items, list) else [])
                if isinstance(i, dict) and (line := _product(i, i.get("quantity")))][:MAX_PRODUCTS]
    count = order.get("items_count")
    if isinstance(count, int) and count > len(products) >= ORDER_PREVIEW_ITEMS:
        products.append(f"… {count} products in all")     # VK showed only some of them
    total = _price(order.get("total_price"))
    address = delivery.get("address") or order.get("address")
    number = order.get("display_order_id") or order.get("id")
    summary = _lines(f"VK shop order {number}" if number else "VK shop order", *products,
                     f"total: {total}" if total else None, f"delivery: {address}" if address else None,
                     f"comment: {order['comment']}" if order.get("comment") else None)
    return {"vk_user_id": order.get("user_id"), "vk_recipient_name": recipient.get("name"),
            "vk_recipient_phone": recipient.get("phone"), "vk_order_id": order.get("id"),
            "vk_products": products, "vk_order_total": total, "vk_delivery_address": address,
            "message": summary}


def event_fields(payload: dict[str, Any], region: str) -> dict[str, Any]:
    """An event's fields for the mapping (the Callback API and the long poll send events alike); ``region``
    reads phones written in a message. The sender's name and city (``vk_profile_name``, ``vk_city``) come
    from the hub's users.get under PROFILE_KEY; a name the client typed (a lead form's, an order's
    recipient) comes first in the mapping."""
    obj = found if isinstance(found := payload.get("object"), dict) else {}
    profile = found if isinstance(found := payload.get(PROFILE_KEY), dict) else {}
    city = profile.get("city")
    out: dict[str, Any] = {"vk_event": payload.get("type"), "vk_profile_name": profile.get("name"), "vk_city": city}
    place = f"city: {city}" if city else None
    if payload.get("type") == "lead_forms_new":
        out.update(vk_user_id=obj.get("user_id"), form_name=obj.get("form_name"), form_id=obj.get("form_id"),
                   ad_id=obj.get("ad_id"))
        answers = obj.get("answers")
        for answer in answers if isinstance(answers, list) else []:
            if isinstance(answer, dict):
                for name in (answer.get("key"), answer.get("question")):
                    if name:
                        out.setdefault(str(name), answer.get("answer"))
    elif payload.get("type") == "message_new":
        message = found if isinstance(found := obj.get("message"), dict) else {}
        text = str(message.get("text") or "")
        products = attached_products(message)
        out.update(vk_user_id=message.get("from_id"), vk_products=products,
                   message=_lines(text, *(f"product: {p}" for p in products), place),
                   phone_in_text=phones_in_text(text, region))
    elif payload.get("type") == "market_order_new":
        out.update(_order_fields(obj))
        out["message"] = _lines(out["message"], place)
    return out


class VkConnector(WebhookConnector[VkSettings]):
    name = "vk"
    config_schema = VkSettings
    default_mapping = "vk"

    def verify(self, request: InboundRequest) -> None:
        try:
            data = _body(request)
        except PayloadError:
            return                      # receive() rejects it, visibly
        if data["type"] == "confirmation" and "secret" not in data:
            return                      # VK omits the secret from confirmation when none is set on its side
        given = str(data.get("secret") or "")
        if not given:
            raise SignatureError("VK event without its secret", status=401)
        if not hmac.compare_digest(given.encode(), self.settings.secret.encode()):
            raise SignatureError("wrong VK secret", status=403)

    def receive(self, request: InboundRequest, received_at: datetime) -> WebhookResult:
        data = _body(request)
        if self.settings.group_id is not None and data.get("group_id") != self.settings.group_id:
            raise PayloadError(f"event of community {data.get('group_id')}, not {self.settings.group_id}", status=403)
        if data["type"] == "confirmation":
            return WebhookResult(reply=WebhookReply(200, self.settings.confirmation))
        if data["type"] not in LEAD_EVENTS:
            return WebhookResult(reply=OK)     # other events (typing, replies, …) are not leads; VK wants "ok"
        event_id = str(data.get("event_id") or "")
        if not event_id:
            raise PayloadError("VK event without event_id", status=400)
        payload = {k: v for k, v in data.items() if k not in ("secret", PROFILE_KEY)}
        return WebhookResult(events=[RawEvent(external_id=f"event:{event_id}", payload=payload)], reply=OK)

    def fields(self, payload: dict[str, Any]) -> dict[str, Any]:
        return event_fields(payload, self.settings.region)
