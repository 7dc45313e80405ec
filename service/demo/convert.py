"""Convert the CC0 Complete Journey sample into shopcast's record format (the demo data).

    python -m service.demo.convert ../shared/data/completejourney-sample

Writes `items.csv.gz`, `users.ndjson.gz` and `events.csv.gz` beside this module. Contact points
are synthesized and clearly fake (`household-123@example.test`); consents, locales and time zones
are assigned deterministically from the household id so that every run gives the same files.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).parent / "sample"
ZONES = ("America/Chicago", "America/New_York", "America/Denver", "America/Los_Angeles")


def _share(key: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def _title(text: str) -> str:
    return " ".join(word.capitalize() for word in text.replace("/", " / ").split())


def _write_gzip(path: Path, text: str) -> None:
    with gzip.GzipFile(path, "wb", mtime=0) as handle:
        handle.write(text.encode())


def convert(source: Path) -> None:
    with gzip.open(source / "transactions_sample.csv.gz", "rt", newline="") as handle:
        transactions = list(csv.DictReader(handle))
    unit_prices: dict[str, list[float]] = defaultdict(list)
    events = io.StringIO()
    writer = csv.writer(events, lineterminator="\n")
    writer.writerow(
        [
            "event_id",
            "user_id",
            "item_id",
            "event",
            "timestamp",
            "channel",
            "quantity",
            "price",
            "session_id",
        ]
    )
    seen: dict[str, int] = defaultdict(int)
    transactions.sort(key=lambda t: (t["transaction_timestamp"], t["basket_id"], t["product_id"]))
    for t in transactions:
        quantity = float(t["quantity"])
        price = round(float(t["sales_value"]) / quantity, 2) if quantity > 0 else ""
        if price != "":
            unit_prices[t["product_id"]].append(float(price))
        base = f"{t['basket_id']}-{t['product_id']}"
        seen[base] += 1
        event_id = base if seen[base] == 1 else f"{base}-{seen[base]}"
        writer.writerow(
            [
                event_id,
                t["household_id"],
                t["product_id"],
                "purchase",
                t["transaction_timestamp"].replace(" ", "T") + "Z",
                "store",
                f"{quantity:g}",
                price,
                t["basket_id"],
            ]
        )
    _write_gzip(OUT / "events.csv.gz", events.getvalue())

    wanted = {t["product_id"] for t in transactions}
    items = io.StringIO()
    writer = csv.writer(items, lineterminator="\n")
    writer.writerow(["item_id", "title", "category", "tags", "price", "currency", "url", "available"])
    with gzip.open(source / "products.csv.gz", "rt", newline="") as handle:
        for p in csv.DictReader(handle):
            if p["product_id"] not in wanted:
                continue
            kind = _title(p["product_type"] or p["product_category"] or p["department"] or "Product")
            size = " ".join(p["package_size"].split())
            title = f"{kind}, {size}" if size else kind
            category = " > ".join(_title(c) for c in (p["department"], p["product_category"]) if c)
            tags = "|".join(t for t in (p["brand"].lower(), p["department"].lower()) if t)
            prices = unit_prices.get(p["product_id"])
            writer.writerow(
                [
                    p["product_id"],
                    title,
                    category,
                    tags,
                    f"{statistics.median(prices):.2f}" if prices else "",
                    "USD",
                    f"https://shop.example.test/p/{p['product_id']}",
                    "true",
                ]
            )
    _write_gzip(OUT / "items.csv.gz", items.getvalue())

    demographics = {}
    with (source / "demographics.csv").open(newline="") as handle:
        for d in csv.DictReader(handle):
            demographics[d["household_id"]] = d
    lines = []
    for household in sorted({t["household_id"] for t in transactions}, key=int):
        attributes: dict[str, str | None] = {"segment": "household"}
        if household in demographics:
            d = demographics[household]
            attributes.update(
                age=d["age"],
                income=d["income"],
                household_size=d["household_size"],
                home_ownership=d["home_ownership"] or None,
                kids_count=d["kids_count"],
            )
        zh = _share(household, "locale") < 0.1
        user: dict[str, object] = {
            "user_id": household,
            "email": f"household-{household}@example.test",
            "locale": "zh-CN" if zh else "en-US",
            "timezone": "Asia/Shanghai" if zh else ZONES[int(_share(household, "tz") * len(ZONES))],
            "consents": {
                "email": {"granted": _share(household, "email") < 0.85, "source": "demo-signup"},
                "push": {"granted": _share(household, "push") < 0.4, "source": "demo-app"},
            },
            "attributes": {k: v for k, v in attributes.items() if v not in (None, "")},
        }
        if _share(household, "push") < 0.4:
            user["push_tokens"] = [f"demo-token-{household}"]
        lines.append(json.dumps(user, separators=(",", ":")))
    _write_gzip(OUT / "users.ndjson.gz", "\n".join(lines) + "\n")


if __name__ == "__main__":
    convert(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/completejourney-sample"))
    for name in sorted(OUT.iterdir()):
        print(name, name.stat().st_size)
