"""The hub's one door to the VK API, through the ``vk_api`` library.

Everything the hub itself asks VK (a sender's name and city for a lead, the community's answer to a client)
goes through ``VkClient``. ``vk_api`` gives the request shape, the ``{"error": …}`` decoding and its error
types; this module adds what a server process needs around it: a timeout on every request, a configurable
API address (a test's local fake server, a proxy), and VK's errors sorted into "try again later" and "will
never work until someone fixes something" (``VkError.retriable``). The token never appears in an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
import vk_api
from jconfig.memory import MemoryConfig
from vk_api.exceptions import TOO_MANY_RPS_CODE, ApiError, ApiHttpError, VkApiError

# vk_api builds every method URL as this literal (vk_api.py, ``method``): it has no setting for the address.
LIBRARY_API_PREFIX = "https://api.vk.ru/method/"
# VK error codes worth a retry: 1 unknown error, 6 too many requests per second, 9 flood control,
# 10 internal server error. Everything else (5 authorization failed, 15 access denied, 901/902 the user
# has not allowed or cannot receive messages from the community, 100 a bad parameter…) will fail the same
# way again, so the caller gives up at once and says why.
RETRIABLE_CODES = frozenset({1, 6, 9, 10})
# vk_api waits this long between two calls of one VkApi (its default, 0.34 s, is the 3 requests/s of a
# *user* token). A community token may make 20 requests/s; the hub makes one users.get per worker batch and
# one messages.send per answer, so 0.05 s keeps well under that without slowing a batch down.
MIN_SECONDS_BETWEEN_CALLS = 0.05
# users.get takes at most 1000 ids in one call.
USERS_GET_MAX_IDS = 1000


class VkError(Exception):
    """A VK call that failed; ``retriable`` says whether the same call may succeed later."""

    def __init__(self, message: str, retriable: bool):
        super().__init__(message)
        self.message = message
        self.retriable = retriable


@dataclass
class VkProfile:
    name: str | None
    city: str | None


class _ApiUrlSession(requests.Session):
    """A requests session that sends vk_api's hard-coded ``https://api.vk.ru/method/…`` to the configured
    ``api_url`` instead (vk_api takes a session but no address: this is the only way to point it at a
    local fake server in tests or at a proxy), and puts a timeout on every request (vk_api sets none, and
    a hung VK must not hang a worker)."""

    def __init__(self, api_url: str, timeout: float):
        super().__init__()
        self.api_url = api_url.rstrip("/") + "/"
        self.timeout = timeout

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if isinstance(url, str) and url.startswith(LIBRARY_API_PREFIX):
            url = self.api_url + url[len(LIBRARY_API_PREFIX):]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def make_vk_api(token: str, api_url: str, api_version: str, timeout: float) -> vk_api.VkApi:
    """A ``vk_api.VkApi`` for a community token, pointed at ``api_url``, with timeouts, no config file
    (MemoryConfig: the library would otherwise read ``vk_config.v2.json`` from the working directory) and
    no silent sleep-and-retry on error 6 (the library retries that forever; the hub's queues back off)."""
    vk = vk_api.VkApi(token=token, api_version=api_version, session=_ApiUrlSession(api_url, timeout),
                      config=MemoryConfig)
    vk.RPS_DELAY = MIN_SECONDS_BETWEEN_CALLS
    vk.error_handlers.pop(TOO_MANY_RPS_CODE, None)
    return vk


def scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


DEFAULT_API_URL, DEFAULT_API_VERSION = "https://api.vk.com/method", "5.199"


def community_api(settings: Any) -> tuple[str, str, str] | None:
    """(token, api_url, api_version) of a VK source's settings, or None when it has no ``access_token``: the hub
    asks VK for names and sends answers only for a community that gave it a token."""
    token = getattr(settings, "access_token", None)
    if not token:
        return None
    return (token, getattr(settings, "api_url", None) or DEFAULT_API_URL,
            getattr(settings, "api_version", None) or DEFAULT_API_VERSION)


class VkClient:
    def __init__(self, token: str, api_url: str = DEFAULT_API_URL, api_version: str = DEFAULT_API_VERSION,
                 timeout: float = 5.0):
        self._token = token
        self._vk = make_vk_api(token, api_url, api_version, timeout)

    def call(self, method: str, values: dict[str, Any]) -> Any:
        """One API method; its ``response``, or VkError."""
        try:
            return self._vk.method(method, values)
        except ApiError as exc:
            code = exc.code
            message = str(exc.error.get("error_msg") or "") if isinstance(exc.error, dict) else ""
            raise VkError(scrub(f"VK {method}: error {code}: {message}", self._token),
                          retriable=code in RETRIABLE_CODES) from None
        except ApiHttpError as exc:
            raise VkError(f"VK {method}: HTTP {exc.response.status_code}", retriable=True) from None
        except VkApiError as exc:          # captcha and the like: a person must act
            raise VkError(scrub(f"VK {method}: {type(exc).__name__}: {exc}", self._token), retriable=False) from None
        except (requests.RequestException, ValueError) as exc:     # unreachable, timed out, not JSON
            raise VkError(f"VK {method}: unreachable ({type(exc).__name__})", retriable=True) from None

    def users_get(self, user_ids: list[int]) -> dict[int, VkProfile]:
        """Name (first + last) and city of each user, one call per 1000 ids. A deleted or banned user comes
        back as "DELETED" with no city: such names are left out (None), not put on a lead."""
        profiles: dict[int, VkProfile] = {}
        ids = list(dict.fromkeys(int(i) for i in user_ids))
        for start in range(0, len(ids), USERS_GET_MAX_IDS):
            chunk = ids[start:start + USERS_GET_MAX_IDS]
            users = self.call("users.get", {"user_ids": ",".join(map(str, chunk)), "fields": "city"})
            for user in users if isinstance(users, list) else []:
                if not isinstance(user, dict) or not isinstance(user.get("id"), int):
                    continue
                name = None if user.get("deactivated") else " ".join(
                    part for part in (str(user.get("first_name") or "").strip(),
                                      str(user.get("last_name") or "").strip()) if part) or None
                city = user.get("city")
                title = city.get("title") if isinstance(city, dict) else None
                profiles[user["id"]] = VkProfile(name=name, city=str(title).strip() or None if title else None)
        return profiles

    def send_message(self, peer_id: int, text: str, random_id: int) -> int:
        """messages.send from the community; the message's id. ``random_id`` makes a retry of the same message a
        no-op on VK's side (VK does not deliver a second message with a random_id it has seen from this sender)."""
        answer = self.call("messages.send", {"peer_id": peer_id, "message": text, "random_id": random_id})
        if isinstance(answer, int):
            return answer
        raise VkError(f"VK messages.send: unexpected answer {type(answer).__name__}", retriable=False)
