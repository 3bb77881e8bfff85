"""The clocks after routing, on both stores: a lead in work left untouched reminds its owner, then the team
lead; a call-back task reminds its owner when due; a lead left in the queue past its SLA alerts the on-duty
team leads; and the fallback gives a lead only to someone available. Time is driven by passing `now` to the
scheduler's round; what people would receive is read from the outbox (nothing is sent)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from hub.config import load_config
from hub.pipeline.routing.lifecycle import count_attempt, set_manager_state, set_status, take
from hub.pipeline.routing.sla import digest
from hub.pipeline.worker import Worker
from hub.pipeline.worklog import add_note, add_task
from hub.runtime import Hub
from hub.scheduler import Scheduler
from hub.store.db import transaction
from hub.store.models import InboundEvent, Lead, LeadHistory, Notification, utcnow

ALL_DAYS = '["mon", "tue", "wed", "thu", "fri", "sat", "sun"]'
T0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)       # a Tuesday, 09:00 in Moscow


def manager(name: str, team: str, chat: str, language: str = "en", extra: str = "") -> str:
    return f'''
[[managers]]
name = "{name}"
team = "{team}"
telegram_chat_id = "{chat}"
language = "{language}"
timezone = "Europe/Moscow"
working_days = {ALL_DAYS}
{extra}'''


def desk_config(fallback: str = "team_lead", strategy: str = "fixed") -> str:
    """Sales (Lena leads; the rule is fixed to Olga, who reads Russian) and support (Sveta leads)."""
    return f'''
[[teams]]
name = "sales"
lead = "Lena"
[[teams]]
name = "support"
lead = "Sveta"
{manager("Olga", "sales", "101", "ru")}
{manager("Lena", "sales", "102")}
{manager("Petr", "sales", "103")}
{manager("Ivan", "sales", "104")}
{manager("Sveta", "support", "105")}
[routing]
fallback = "{fallback}"
[[routing.rules]]
name = "all"
team = "sales"
strategy = "{strategy}"
manager = "Olga"
sla_minutes = 15
follow_up_hours = 24
[notify]
base_url = "https://hub.example.ru"
[notify.telegram]
bot_token = "123456789:AAF-test-token-not-real"
'''


def new_lead(hub: Hub, phone: str = "+79123456789", name: str = "Иван Петров", key: str = "e1") -> int:
    now = utcnow()
    with transaction(hub.engine) as s:
        s.execute(insert(InboundEvent).values(source="site", external_id=key, received_at=now, method="POST",
                                              headers={}, body=b"", payload={"phone": phone, "name": name},
                                              status="pending", attempts=0, next_attempt_at=now))
    Worker(hub).drain()
    with transaction(hub.engine, read_only=True) as s:
        return s.scalars(select(Lead.id).order_by(Lead.id.desc())).first()


def lead_of(hub: Hub, lead_id: int) -> Lead:
    with transaction(hub.engine, read_only=True) as s:
        return s.get(Lead, lead_id)


def sent_to(hub: Hub, chat: str) -> list[Notification]:
    with transaction(hub.engine, read_only=True) as s:
        return list(s.scalars(select(Notification).where(Notification.recipient == chat).order_by(Notification.id)))


def kinds(hub: Hub, lead_id: int) -> list[str]:
    with transaction(hub.engine, read_only=True) as s:
        return list(s.scalars(select(LeadHistory.kind).where(LeadHistory.lead_id == lead_id)
                              .order_by(LeadHistory.id)))


def entry(hub: Hub, lead_id: int, kind: str) -> dict:
    with transaction(hub.engine, read_only=True) as s:
        return s.scalars(select(LeadHistory.data).where(LeadHistory.lead_id == lead_id, LeadHistory.kind == kind)
                         .order_by(LeadHistory.id.desc())).first()


def off_duty(hub: Hub, *names: str) -> None:
    with transaction(hub.engine) as s:
        for name in names:
            set_manager_state(s, hub.config, name, "admin", utcnow(), on_duty=False)


def taken(hub: Hub, at: datetime) -> int:
    lead_id = new_lead(hub)
    with transaction(hub.engine) as s:
        take(s, hub.config, lead_id, "Olga", at)
    return lead_id


def test_an_untouched_lead_reminds_its_owner_then_the_team_lead_and_no_more(write_config):
    hub = Hub(load_config(write_config(desk_config())))
    lead_id = taken(hub, T0)
    olga_before = len(sent_to(hub, "101"))                   # the new lead's own message
    scheduler = Scheduler(hub, "only")
    assert scheduler.tick(T0 + timedelta(hours=23, minutes=59)) == []
    assert scheduler.tick(T0 + timedelta(hours=24, seconds=1)) == [
        {"lead_id": lead_id, "from": None, "to": "Olga", "kind": "follow_up_reminded"}]
    [reminder] = sent_to(hub, "101")[olga_before:]
    assert reminder.subject == f"Лид №{lead_id} ждёт вашего следующего шага"         # in Olga's language
    assert "Иван Петров · +79123456789" in reminder.text
    assert "24 часа" in reminder.text and "Попыток связи пока: 0." in reminder.text
    assert "Для причины «не отвечает после 5 попыток» нужно 5." in reminder.text
    lead = lead_of(hub, lead_id)
    assert (lead.follow_up_stage, lead.follow_up_due_at) == (1, T0 + timedelta(hours=48, seconds=1))

    assert scheduler.tick(T0 + timedelta(hours=47)) == []
    assert scheduler.tick(T0 + timedelta(hours=48, seconds=2)) == [
        {"lead_id": lead_id, "from": "Olga", "to": "Lena", "kind": "follow_up_escalated"}]
    [told] = sent_to(hub, "102")
    assert told.subject == f"Lead #{lead_id} is not being worked"                   # in Lena's language
    assert "Olga has made no contact attempt, note or call-back for 2 days" in told.text
    assert (lead_of(hub, lead_id).follow_up_stage, lead_of(hub, lead_id).follow_up_due_at) == (2, None)

    assert scheduler.tick(T0 + timedelta(days=30)) == []                          # no third step
    assert len(sent_to(hub, "101")) == olga_before + 1 and len(sent_to(hub, "102")) == 1
    assert kinds(hub, lead_id) == ["assigned", "taken", "follow_up_reminded", "follow_up_escalated"]
    assert entry(hub, lead_id, "follow_up_escalated")["team_lead"] == "Lena"
    hub.dispose()


def test_an_attempt_or_a_note_restarts_the_clock(write_config):
    hub = Hub(load_config(write_config(desk_config())))
    lead_id = taken(hub, T0)
    scheduler = Scheduler(hub, "only")
    with transaction(hub.engine) as s:
        count_attempt(s, hub.config, lead_id, "Olga", T0 + timedelta(hours=20))
    with transaction(hub.engine) as s:
        add_note(s, hub.config, lead_id, "Asked to call after the holidays", "Olga", T0 + timedelta(hours=40))
    assert scheduler.tick(T0 + timedelta(hours=50)) == []        # 24 h from the note, not from the take
    assert scheduler.tick(T0 + timedelta(hours=64, seconds=1))[0]["kind"] == "follow_up_reminded"
    text = sent_to(hub, "101")[-1].text
    assert "24 часа" in text and "Попыток связи пока: 1." in text
    with transaction(hub.engine) as s:                            # reminded, then she calls: back to stage 0
        count_attempt(s, hub.config, lead_id, "Olga", T0 + timedelta(hours=70))
    assert lead_of(hub, lead_id).follow_up_stage == 0
    assert scheduler.tick(T0 + timedelta(hours=89)) == []        # the old stage-1 time passes without a step
    assert sent_to(hub, "102") == []
    hub.dispose()


def test_a_call_back_at_18_reminds_the_owner_once_and_not_before(write_config):
    hub = Hub(load_config(write_config(desk_config())))
    lead_id = taken(hub, T0)
    six_pm_moscow = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    with transaction(hub.engine) as s:
        task = add_task(s, hub.config, lead_id, six_pm_moscow, "обсудить годовой тариф", "Olga", T0)
        task_id = task.id
    before = len(sent_to(hub, "101"))
    scheduler = Scheduler(hub, "only")
    assert scheduler.tick(six_pm_moscow - timedelta(seconds=1)) == []
    assert scheduler.tick(six_pm_moscow + timedelta(seconds=20)) == [
        {"lead_id": lead_id, "from": None, "to": "Olga", "kind": "task_reminded"}]
    [reminder] = sent_to(hub, "101")[before:]
    assert reminder.subject == "Перезвонить в 18:00: Иван Петров"     # her language and time zone
    assert reminder.text.startswith("обсудить годовой тариф\n")
    assert f"https://hub.example.ru/leads/{lead_id}" in reminder.text
    assert scheduler.tick(six_pm_moscow + timedelta(minutes=5)) == []
    assert len(sent_to(hub, "101")) == before + 1
    assert entry(hub, lead_id, "task_reminded")["task_id"] == task_id
    assert kinds(hub, lead_id).count("task_reminded") == 1
    hub.dispose()


def test_a_lead_left_in_the_queue_past_its_sla_alerts_every_on_duty_team_lead_once(write_config):
    hub = Hub(load_config(write_config(desk_config(fallback="queue"))))
    off_duty(hub, "Olga")
    lead_id = new_lead(hub)
    queued = lead_of(hub, lead_id)
    assert queued.owner is None and queued.routing_rule == "all" and queued.sla_due_at is not None
    due = queued.sla_due_at
    new_lead(hub, phone="8 912 345-67-89", key="e2")               # the person writes again: the clock runs on
    assert lead_of(hub, lead_id).sla_due_at == due
    scheduler = Scheduler(hub, "only")
    assert scheduler.tick(due - timedelta(seconds=1)) == []
    assert scheduler.tick(due + timedelta(seconds=1)) == [
        {"lead_id": lead_id, "from": None, "to": "Lena", "kind": "queue_escalated"}]
    [alert] = sent_to(hub, "102")
    assert alert.subject == f"Lead #{lead_id} waits in the queue"
    assert "Nobody has taken it within 15 min." in alert.text and "Иван Петров" in alert.text
    assert sent_to(hub, "105") == []                                 # support's lead: not their team
    assert scheduler.tick(due + timedelta(hours=3)) == []           # once
    assert kinds(hub, lead_id) == ["unassigned", "unassigned", "queue_escalated"]
    assert entry(hub, lead_id, "queue_escalated")["alerted"] == ["Lena"]
    with transaction(hub.engine) as s:                               # still in the digest, as before
        assert digest(s, hub.config, due + timedelta(hours=3)) == 2
    assert f"#{lead_id} site" in sent_to(hub, "102")[-1].text
    hub.dispose()


def test_the_team_of_the_rule_off_duty_alerts_the_other_team_leads(write_config):
    hub = Hub(load_config(write_config(desk_config(fallback="queue"))))
    off_duty(hub, "Olga", "Lena")
    lead_id = new_lead(hub)
    due = lead_of(hub, lead_id).sla_due_at
    assert Scheduler(hub, "only").tick(due + timedelta(seconds=1))[0]["to"] == "Sveta"
    assert sent_to(hub, "102") == [] and len(sent_to(hub, "105")) == 1
    hub.dispose()


def test_the_fallback_gives_a_lead_only_to_someone_available(write_config):
    hub = Hub(load_config(write_config(desk_config())))
    off_duty(hub, "Olga")                           # the rule's one manager: the team lead, who is in
    to_lena = new_lead(hub, "+79120000001", "A", "a")
    assert lead_of(hub, to_lena).owner == "Lena" and "fallback: team lead" in entry(hub, to_lena, "assigned")["why"]

    off_duty(hub, "Lena")                           # and not her when she is off: the next one in the team
    lena_got = len(sent_to(hub, "102"))
    first, second = new_lead(hub, "+79120000002", "B", "b"), new_lead(hub, "+79120000003", "C", "c")
    assert {lead_of(hub, first).owner, lead_of(hub, second).owner} == {"Petr", "Ivan"}    # round-robin on
    why = entry(hub, first, "assigned")["why"]
    assert "team lead Lena: off duty" in why and "fallback: next available in the team" in why

    off_duty(hub, "Petr", "Ivan")                   # nobody in sales: the queue, and Sveta hears of it
    third = new_lead(hub, "+79120000004", "D", "d")
    assert lead_of(hub, third).owner is None and lead_of(hub, third).sla_due_at is not None
    assert "left in the queue; team leads alerted: Sveta" in entry(hub, third, "unassigned")["why"]
    [alert] = sent_to(hub, "105")
    assert alert.subject == f"Lead #{third} waits in the queue"
    assert "Nobody can take it now: nobody available (Olga: off duty); team lead Lena: off duty" in alert.text
    assert len(sent_to(hub, "102")) == lena_got     # Lena is off duty: no alert to her

    off_duty(hub, "Sveta")                          # no team lead on duty: the queue, said so
    fourth = new_lead(hub, "+79120000005", "E", "e")
    assert "no team lead on duty to alert" in entry(hub, fourth, "unassigned")["why"]
    hub.dispose()


def test_a_round_robin_teams_fallback_skips_an_unavailable_team_lead(write_config):
    hub = Hub(load_config(write_config(desk_config(strategy="round_robin"))))
    off_duty(hub, "Olga", "Lena", "Petr", "Ivan")
    lead_id = new_lead(hub)
    assert lead_of(hub, lead_id).owner is None                        # not Lena, who is off duty
    assert "team leads alerted: Sveta" in entry(hub, lead_id, "unassigned")["why"]
    hub.dispose()


def test_a_closed_leads_call_back_is_not_reminded(write_config):
    hub = Hub(load_config(write_config(desk_config())))
    lead_id = taken(hub, T0)
    six_pm_moscow = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    with transaction(hub.engine) as s:
        add_task(s, hub.config, lead_id, six_pm_moscow, "обсудить годовой тариф", "Olga", T0)
        set_status(s, hub.config, lead_id, "converted", None, "Olga", T0 + timedelta(minutes=1))
    assert Scheduler(hub, "only").tick(six_pm_moscow + timedelta(seconds=20)) == []
    assert "task_reminded" not in kinds(hub, lead_id)
    hub.dispose()
