# Stock levels for the warehouse.

import re
from dataclasses import dataclass

SKU = re.compile(r"^[A-Z]{3}-\d{4}$")


@dataclass
class Item:
    sku: str
    qty: int
    price: float

    def value(self):
        return self.qty * self.price


def parse_line(s):
    parts = [p.strip() for p in s.split(",") if p.strip()]
    if len(parts) != 3 or not SKU.match(parts[0]):
        raise ValueError(f"bad line: {s!r}")
    return Item(parts[0], int(parts[1]), float(parts[2]))


def total_value(items, tax=0.2):
    tmp = sum(item.value() for item in items)
    return round(tmp * (1 + tax), 2)


def low_stock(items, threshold=5):
    """Items whose quantity is below the threshold.

    Args:
        items: the items to check.
        threshold: the lowest acceptable quantity.

    Returns:
        The items to reorder.
    """
    return [item for item in items if item.qty < threshold]


class Warehouse:
    def __init__(self, name):
        self.name = name
        self.items = {}

    def add(self, item):
        existing = self.items.get(item.sku)
        self.items[item.sku] = (
            item if existing is None else Item(item.sku, existing.qty + item.qty, item.price)
        )

    async def restock(self, supplier, d):
        res = []
        for sku, qty in d.items():
            res.append(await supplier.order(sku, qty))
        return res
