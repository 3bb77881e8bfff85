"""The funnel per channel: received → taken → converted by first and by last touch, cost per lead and per client."""

from __future__ import annotations

from hub.web.pages.blueprint import pages  # noqa: F401
