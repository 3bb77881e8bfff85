"""Write a CSV export of an old CRM: N rows, about 70% distinct people, phones spelled every which way."""

from __future__ import annotations

import csv
import random
import sys


def spell(n: int, rnd: random.Random) -> str:
    d = f"9{n:09d}"
    a, b, c, e = d[:3], d[3:6], d[6:8], d[8:]
    return rnd.choice([f"8 ({a}) {b}-{c}-{e}", f"+7 {a} {b}{c}{e}", f"8{d}", f"+7{d}", f"8-{a}-{b}-{c}-{e}"])


def write(path: str, rows: int, seed: int = 1) -> None:
    rnd = random.Random(seed)
    people = int(rows * 0.7)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["ФИО", "Телефон", "E-mail", "Дата создания", "utm_source", "utm_campaign", "Комментарий"])
        for i in range(rows):
            n = i if i < people else rnd.randrange(people)
            w.writerow([f"Клиент {n}", spell(12_000_000 + n, rnd), f"client{n}@example.ru" if n % 3 else "",
                        f"{1 + n % 28:02d}.{1 + n % 12:02d}.2025 {n % 24:02d}:{n % 60:02d}",
                        rnd.choice(["google", "yandex", "vk", ""]), f"camp{n % 40}", "imported"])


if __name__ == "__main__":
    write(sys.argv[1], int(sys.argv[2]))
