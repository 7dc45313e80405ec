"""The three real data sets in ../shared/data, as event logs in shopcast's record format.

Read from the shared folder by benchmarks only (two of the three are not CC0: never shipped).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from training.events import EventLog, from_table

DATA = Path(
    os.environ.get("SHOPCAST_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
)
TAOBAO_TYPES = {"pv": "view", "cart": "add_to_cart", "fav": "wishlist", "buy": "purchase"}


@dataclass(frozen=True)
class Task:
    name: str
    load: Callable[[], EventLog]
    target: tuple[str, ...] | None  # what counts as relevant in the test period


def taobao() -> EventLog:
    table = pcsv.read_csv(
        DATA / "taobao-userbehavior-head" / "UserBehavior_head.csv",
        read_options=pcsv.ReadOptions(
            column_names=["user_id", "item_id", "category_id", "behavior", "timestamp"]
        ),
        convert_options=pcsv.ConvertOptions(column_types={"user_id": pa.string(), "item_id": pa.string()}),
    )
    kinds = [TAOBAO_TYPES[b] for b in table["behavior"].to_pylist()]
    return from_table(
        pa.table(
            {
                "user_id": table["user_id"],
                "item_id": table["item_id"],
                "event": kinds,
                "timestamp": table["timestamp"],
            }
        )
    )


def complete_journey() -> EventLog:
    table = pcsv.read_csv(
        DATA / "completejourney-sample" / "transactions_sample.csv.gz",
        convert_options=pcsv.ConvertOptions(
            column_types={"household_id": pa.string(), "product_id": pa.string(), "basket_id": pa.string()}
        ),
    )
    stamps = pc.cast(table["transaction_timestamp"], pa.timestamp("s"))
    return from_table(
        pa.table(
            {
                "user_id": table["household_id"],
                "item_id": table["product_id"],
                "event": ["purchase"] * len(table),
                "timestamp": stamps,
                "session_id": table["basket_id"],
            }
        )
    )


def movielens() -> EventLog:
    table = pcsv.read_csv(
        DATA / "ml-100k" / "u.data",
        read_options=pcsv.ReadOptions(column_names=["user_id", "item_id", "rating", "timestamp"]),
        parse_options=pcsv.ParseOptions(delimiter="\t"),
        convert_options=pcsv.ConvertOptions(column_types={"user_id": pa.string(), "item_id": pa.string()}),
    )
    liked = table.filter(pc.greater_equal(table["rating"], 4))
    return from_table(
        pa.table(
            {
                "user_id": liked["user_id"],
                "item_id": liked["item_id"],
                "event": ["rate"] * len(liked),
                "timestamp": liked["timestamp"],
            }
        )
    )


TASKS = (
    Task("taobao/purchases", taobao, ("purchase",)),
    Task("taobao/interactions", taobao, None),
    Task("complete_journey/purchases", complete_journey, ("purchase",)),
    Task("ml-100k/ratings>=4", movielens, None),
)
