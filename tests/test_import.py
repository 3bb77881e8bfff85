"""`hub import` of an old CRM's CSV export, against real stores."""

from __future__ import annotations

import csv
import json
import shutil

from hub.pipeline.worker import Worker
from hub.store.models import InboundEvent, Lead, Person, Touch
from tests.conftest import FIXTURES
from tests.helpers.db import count

OLD_CRM = FIXTURES / "csv_import" / "old_crm.csv"


def test_import_creates_leads_with_dates_sources_and_utm(hub, runner):
    report = json.loads(runner("import", str(OLD_CRM), "--source", "old_crm", "--timezone", "Europe/Moscow",
                               "--json").output)
    assert {k: report[k] for k in ("rows", "created", "merged", "already_imported", "rejected")} == \
        {"rows": 5, "created": 2, "merged": 1, "already_imported": 0, "rejected": 2}
    assert report["rejected_rows"][0]["row"] == 4 and "no phone, e-mail" in report["rejected_rows"][0]["reason"]
    assert report["rejected_rows"][1] == {"row": 5, "reason": "occurred_at: '32.13.2025' is not a date (expected "
                                          "e.g. 31.12.2024 18:05, 2024-12-31 or 2024-12-31T18:05:00+03:00)"}
    leads = json.loads(runner("leads", "list", "--json").output)
    ivan = next(lead for lead in leads if lead["name"] == "Иван Петров")
    assert ivan["source"] == "old_crm" and ivan["phones"] == ["+79123456789"]
    assert ivan["created_at"] == "2024-12-31T15:05:00Z"              # 18:05 in Moscow
    assert [t["at"] for t in ivan["touches"]] == ["2024-12-31T15:05:00Z", "2025-01-05T07:00:00Z"]
    assert ivan["first_touch"]["utm_campaign"] == "brand" and ivan["touch_count"] == 2
    anna = next(lead for lead in leads if lead["name"] == "Анна")
    assert anna["created_at"] == "2025-02-01T06:30:00Z" and anna["first_touch"]["utm_source"] == "vk"
    assert count(hub, InboundEvent) == 5                             # every row, rejected ones too, is kept


def test_importing_twice_imports_nothing_twice(hub, runner):
    runner("import", str(OLD_CRM))
    again = json.loads(runner("import", str(OLD_CRM), "--json").output)
    assert again["already_imported"] == 5 and again["created"] == again["merged"] == 0
    assert count(hub, Lead) == 2 and count(hub, Touch) == 3


def test_dry_run_writes_nothing(hub, runner):
    out = runner("import", str(OLD_CRM), "--dry-run").output
    assert out.startswith("dry run, nothing saved: would import 5 row(s): 2 new lead(s), 1 touch(es)")
    assert count(hub, InboundEvent) == 0 and count(hub, Person) == 0


def test_imported_rows_meet_live_leads_by_the_same_identity_rules(client, hub, runner):
    client.post("/hooks/site", json={"phone": "89123456789", "utm_source": "google"})
    Worker(hub).drain()
    report = json.loads(runner("import", str(OLD_CRM), "--json").output)
    assert report["created"] == 1 and report["merged"] == 2          # both Ivan rows join the live lead
    assert count(hub, Person) == 2 and count(hub, Lead) == 2


def test_column_map_encoding_and_rejected_report(hub, runner, tmp_path):
    path = tmp_path / "export.csv"
    with path.open("w", encoding="cp1251", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(["Клиент", "Моб. телефон", "Примечание"])
        writer.writerow(["Пётр", "8 912 111 22 33", "из Excel"])
        writer.writerow(["Без номера", "", ""])
    assert "no phone or e-mail column: the file has Клиент, Моб. телефон, Примечание" in \
        runner("import", str(path), "--encoding", "cp1251", expect=1).stderr
    assert "is not utf-8-sig: pass --encoding" in runner("import", str(path), "--map", "phone=Моб. телефон",
                                                           expect=1).stderr
    rejected = tmp_path / "rejected.csv"
    out = runner("import", str(path), "--encoding", "cp1251", "--map", "phone=Моб. телефон", "--map",
                 "name=Клиент", "--rejected-csv", str(rejected), "--tag", "excel").output
    assert "1 new lead(s)" in out and "1 rejected" in out
    [lead] = json.loads(runner("leads", "list", "--json").output)
    assert (lead["name"], lead["phones"], lead["tags"], lead["source"]) == ("Пётр", ["+79121112233"], ["excel"],
                                                                            "import")
    rows = list(csv.reader(rejected.open(encoding="utf-8-sig")))
    assert rows[0] == ["row", "reason"] and rows[1][0] == "3"
    assert "--map nope=…: unknown field" in runner("import", str(path), "--map", "nope=X", expect=1).stderr


def test_an_empty_file_is_refused_clearly(runner, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "the file is empty: no header row" in runner("import", str(empty), expect=1).stderr
    shutil.copy(OLD_CRM, tmp_path / "x.csv")
    assert "use a-z, 0-9" in runner("import", str(tmp_path / "x.csv"), "--source", "Old CRM", expect=2).stderr
