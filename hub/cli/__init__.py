"""The `hub` command. Every listing takes --json (UTF-8, Cyrillic kept as is) for scripts.

One module per group of commands: serve (run, serve, worker, scheduler, poll), leads, events, persons,
managers, users (and their API tokens), sinks, data (check, db, import, reconcile, mapping test), reports; what
they share is in common.
"""

from __future__ import annotations

import click

from hub.cli import data, events, leads, managers, persons, reports, serve, sinks, users
from hub.cli.common import setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leadhub")
def main() -> None:
    """lead hub: every lead channel into one store, none lost, none doubled."""
    setup_logging()


for command in (serve.run, serve.serve, serve.worker, serve.scheduler, serve.poll,
                leads.leads, events.events, persons.persons, managers.managers, users.users, sinks.sinks,
                data.check, data.db, data.import_csv, data.reconcile_command, data.mapping, reports.report):
    main.add_command(command)
