"""Leads by status and refusal reason, the handover log, and each manager's activity per day."""

from __future__ import annotations

from hub.web.pages.blueprint import pages  # noqa: F401
