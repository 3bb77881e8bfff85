"""`hub persons`: show a person, export or forget their data, and merge or unmerge duplicates (audited)."""

from __future__ import annotations

from typing import Any

import click

from hub.cli.common import actor, config_option, fail, json_option, listing, open_hub, print_json, record
from hub.store.db import transaction


@click.group()
def persons() -> None:
    """Persons: show, possible duplicates, merge and unmerge (audited)."""


@persons.command("show")
@config_option
@json_option
@click.argument("ref")
def persons_show(config_path: str, as_json: bool, ref: str) -> None:
    """A person by id, phone (any spelling) or e-mail."""
    from hub.desk.listings import person_details
    from hub.pipeline.persons import find_person

    def details(session, hub):
        person = find_person(session, ref, hub.config.default_region)
        return person_details(session, person) if person else None

    data = record(config_path, details, f"no person matches {ref!r}")
    if as_json:
        print_json(data)
        return
    click.echo(f"person {data['id']}: {data['name'] or '(no name)'}"
               + (f" (merged into {data['merged_into_id']})" if data["merged_into_id"] else ""))
    click.echo(f"  keys: {', '.join(data['keys']) or '(none)'}")
    for lead in data["leads"]:
        click.echo(f"  lead {lead['id']}: {lead['status']}"
                   + (f", merged into lead {lead['merged_into_id']}" if lead["merged_into_id"] else ""))


@persons.command("export")
@config_option
@click.argument("ref")
def persons_export(config_path: str, ref: str) -> None:
    """Everything held about a person (id, phone or e-mail), as JSON: for a data subject's request."""
    from hub.desk.redact import Redactor
    from hub.pipeline.persons import export_person, find_person
    from hub.store.users import Role

    def everything(session, hub):
        person = find_person(session, ref, hub.config.default_region)
        if person is None:
            return None
        data = export_person(session, person)
        # The raw deliveries are the person's own data, but the secrets they carried are the hub's.
        redactor = Redactor(hub, Role.ADMIN)
        data["raw_events"] = [redactor.exported(e) for e in data["raw_events"]]
        return data

    print_json(record(config_path, everything, f"no person matches {ref!r}"))


@persons.command("forget")
@config_option
@json_option
@click.argument("ref")
@click.option("--by", help="Who (default: $HUB_ACTOR or the login name).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def persons_forget(config_path: str, as_json: bool, ref: str, by: str | None, yes: bool) -> None:
    """Erase a person's personal data (name, phones, e-mails, messages, raw payloads, notification texts);
    statuses, sources and UTM marks stay so reports still add up. Cannot be undone."""
    from hub.pipeline.persons import find_person, forget_person

    hub = open_hub(config_path)
    with transaction(hub.engine) as session:
        person = find_person(session, ref, hub.config.default_region)
        if person is None:
            fail(f"no person matches {ref!r}")
        if not yes and not click.confirm(f"Erase person {person.id}'s personal data for good?", err=True):
            fail("nothing erased", code=1)
        person_id, counts = person.id, forget_person(session, person, actor(by))
    if as_json:
        print_json({"person_id": person_id, "erased": counts})
    else:
        click.echo(f"person {person_id} forgotten: {counts['keys']} key(s), {counts['leads']} lead(s), "
                   f"{counts['touches']} touch(es), {counts['raw_events']} raw event(s) erased")


@persons.command("duplicates")
@config_option
@json_option
@click.option("--all", "show_all", is_flag=True, help="Include those resolved by a merge.")
def persons_duplicates(config_path: str, as_json: bool, show_all: bool) -> None:
    """Persons that one delivery's keys pointed to at once: candidates for `hub persons merge`."""
    from hub.desk.listings import possible_duplicates

    listing(config_path, as_json, lambda s, _: possible_duplicates(s, include_resolved=show_all),
            [("ID", lambda r: r["id"]), ("PERSON", lambda r: r["person_id"]),
             ("OTHER", lambda r: r["other_person_id"]), ("SHARED KEYS", lambda r: ", ".join(r["keys"])),
             ("EVENT", lambda r: r["event_id"]), ("MERGE", lambda r: r["resolved_by_merge_id"])])


@persons.command("merge")
@config_option
@json_option
@click.argument("kept_id", type=int)
@click.argument("merged_id", type=int)
@click.option("--by", help="Who merges (default: $HUB_ACTOR or the login name).")
@click.option("--reason")
def persons_merge(config_path: str, as_json: bool, kept_id: int, merged_id: int, by: str | None,
                  reason: str | None) -> None:
    """Merge person MERGED_ID into KEPT_ID: keys, leads and touches move; undo with `unmerge`."""
    from hub.pipeline.persons import MergeError, merge_persons

    hub = open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            merge = merge_persons(session, kept_id, merged_id, actor(by), reason)
            result: dict[str, Any] = {"merge_id": merge.id, "kept_person_id": kept_id, "merged_person_id": merged_id,
                      "moved": merge.moved}
    except MergeError as exc:
        fail(str(exc))
    if as_json:
        print_json(result)
    else:
        m = result["moved"]
        click.echo(f"merge {result['merge_id']}: person {merged_id} into {kept_id} ({len(m['keys'])} key(s), "
                   f"{len(m['leads'])} lead(s), {len(m['touches'])} touch(es) moved); "
                   f"undo: hub persons unmerge {result['merge_id']}")


@persons.command("unmerge")
@config_option
@json_option
@click.argument("merge_id", type=int)
@click.option("--by", help="Who undoes it (default: $HUB_ACTOR or the login name).")
def persons_unmerge(config_path: str, as_json: bool, merge_id: int, by: str | None) -> None:
    """Undo a merge exactly as it was recorded."""
    from hub.pipeline.persons import MergeError, unmerge_persons

    hub = open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            merge = unmerge_persons(session, merge_id, actor(by))
            result = {"merge_id": merge.id, "kept_person_id": merge.kept_person_id,
                      "restored_person_id": merge.merged_person_id}
    except MergeError as exc:
        fail(str(exc))
    if as_json:
        print_json(result)
    else:
        click.echo(f"merge {merge_id} undone: person {result['restored_person_id']} is separate again")
