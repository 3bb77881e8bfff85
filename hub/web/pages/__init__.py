"""The web app's pages: sign-in, the sales inbox and lead card, the channel report, channel health with
replay, the mapping tester, and the managers' switches. Server-rendered; every asset is served by the hub.

Pages read through hub.desk.queries and act through hub.pipeline.routing — the same functions as the API and the CLI.
One blueprint (``pages``, in blueprint.py); each module adds the routes of one part of the app to it.
"""

from hub.web.pages import (
    account,
    channels,
    leads,
    report_activity,
    report_funnel,
    report_managers,
    report_statuses,
    reports,
    team,
    telegram_link,
)
from hub.web.pages.blueprint import pages

__all__ = ["pages", "account", "channels", "leads", "report_activity", "report_funnel", "report_managers",
           "report_statuses", "reports", "team", "telegram_link"]
