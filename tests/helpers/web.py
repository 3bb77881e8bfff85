"""A sales department for web tests: two teams, fixed routing per source, users of every role, and leads
delivered through the real webhook and worker."""

from __future__ import annotations

import json
import re

from hub.desk.access import add_token, add_user
from hub.pipeline.worker import Worker
from hub.store.db import transaction

PASSWORD = "correct horse battery"
ALL_DAYS = json.dumps(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])

# Team "north" (lead Lena: Lena, Max, Mia) and team "south" (lead Sam: Sam, Sid). Each source routes to one
# fixed manager, so the test knows who owns what; the message decides warmth.
WEB_CONFIG = '''
[[sources]]
name = "ads"
connector = "site_form"

[[sources]]
name = "seo"
connector = "site_form"

[[teams]]
name = "north"
lead = "Lena"

[[teams]]
name = "south"
lead = "Sam"
''' + "".join(f'''
[[managers]]
name = "{name}"
team = "{team}"
email = "{name.lower()}@example.ru"
working_days = {ALL_DAYS}
timezone = "{"Asia/Yekaterinburg" if name == "Lena" else "UTC"}"
''' for name, team in [("Lena", "north"), ("Max", "north"), ("Mia", "north"), ("Sam", "south"), ("Sid", "south")]) \
    + '''
[warmth]
default = "cold"

[[warmth.rules]]
name = "asks to pay"
warmth = "hot"
message_keywords = ["pay"]

[[warmth.rules]]
name = "asks advice"
warmth = "warm"
message_keywords = ["advice"]

[[routing.rules]]
name = "site to Max"
sources = ["site"]
team = "north"
strategy = "fixed"
manager = "Max"
sla_minutes = 15

[[routing.rules]]
name = "ads to Mia"
sources = ["ads"]
team = "north"
strategy = "fixed"
manager = "Mia"

[[routing.rules]]
name = "seo to Sid"
sources = ["seo"]
team = "south"
strategy = "fixed"
manager = "Sid"
'''

def with_manager(config: str, name: str, **settings: str) -> str:
    """WEB_CONFIG with settings of one [[managers]] entry replaced or added (timezone, language, …)."""
    head = f'[[managers]]\nname = "{name}"\n'
    start = config.index(head) + len(head)
    end = config.find("[[", start)
    end = len(config) if end < 0 else end
    lines = [line for line in config[start:end].splitlines() if line.split(" = ")[0] not in settings]
    def toml(value) -> str:
        if isinstance(value, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items()) + " }"
        return json.dumps(value)
    lines += [f"{key} = {toml(value)}" for key, value in settings.items()]
    return config[:start] + "\n".join(line for line in lines if line) + "\n\n" + config[end:]


# login -> (role, manager)
USERS = {
    "admin@example.ru": ("admin", None),
    "marketer@example.ru": ("marketer", None),
    "max@example.ru": ("manager", "Max"),
    "mia@example.ru": ("manager", "Mia"),
    "sid@example.ru": ("manager", "Sid"),
    "lena@example.ru": ("lead", "Lena"),
    "pbx@example.ru": ("telephony", None),
}


def make_users(hub) -> None:
    with transaction(hub.engine) as session:
        for login, (role, manager) in USERS.items():
            add_user(session, hub.config, login, PASSWORD, role, manager)


def token_for(hub, login: str) -> dict[str, str]:
    with transaction(hub.engine) as session:
        _, plain = add_token(session, login, "tests")
    return {"Authorization": f"Bearer {plain}"}


def deliver(client, hub, source: str, phone: str, message: str = "hello", **fields) -> None:
    r = client.post(f"/hooks/{source}", json={"phone": phone, "name": f"Client {phone[-4:]}", "message": message,
                                              **fields})
    assert r.status_code == 200, r.text
    Worker(hub).drain()


def csrf_token(client, path: str = "/login") -> str:
    page = client.get(path, follow_redirects=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client, login: str, password: str = PASSWORD):
    return client.post("/login", data={"login": login, "password": password, "csrf_token": csrf_token(client)})


def post_form(client, path: str, data: dict | None = None, page: str = "/"):
    """POST a form the way the browser does: with the CSRF token the pages carry."""
    return client.post(path, data={**(data or {}), "csrf_token": csrf_token(client, page)})
