"""The managers report: per manager and per team, leads received, taken, converted, refused by reason, speed to lead."""

from __future__ import annotations

from hub.web.pages.blueprint import pages  # noqa: F401
