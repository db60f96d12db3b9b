"""Source files the documentation tests work on."""

from __future__ import annotations

# A Google-style Python module: one class and one function documented already, the rest not.
PYTHON = '''\
#!/usr/bin/env python3
# Copyright 2024 Example Corp. All rights reserved.

import re
from dataclasses import dataclass

LINE = re.compile(r"(\\w+)=(\\d+)")
data = {}


@dataclass
class Item:
    """An item in stock.

    Args:
        name: What the item is called.
        qty: How many are left.
    """

    name: str
    qty: int

    def value(self, price: float) -> float:
        return self.qty * price

    @staticmethod
    def parse(text):
        return Item(*text.split(":"))


def parse_line(line: str, sep: str = ",") -> dict[str, int]:
    res = {}
    for part in line.split(sep):
        m = LINE.match(part.strip())
        if m:
            res[m.group(1)] = int(m.group(2))
    return res


async def load(path, *args, **kwargs):
    tmp = [l.strip() for l in open(path) if l and not l.startswith("#")]
    flags = sum(1 << i for i, _ in enumerate(tmp)) & 0xFF
    # Already explained.
    mask = (flags >> 4) ^ 0b1010
    print(mask)  # and this one too
    return flags


def low_stock(items, limit=5):
    """Items whose quantity is below the limit."""
    return [i for i in items if i.qty < limit]


def gen(n):
    for i in range(n):
        yield i * 2
'''

NUMPY_PYTHON = '''\
def area(width, height):
    """Area of a rectangle.

    Parameters
    ----------
    width : float
        The width.

    Returns
    -------
    float
        The area.
    """
    return width * height


def scale(value: float, factor: float = 2.0) -> float:
    return value * factor
'''

REST_PYTHON = '''\
def area(width, height):
    """Area of a rectangle.

    :param width: The width.
    :param height: The height.
    :returns: The area.
    """
    return width * height


def scale(value, factor=2.0):
    return value * factor
'''

TYPESCRIPT = """\
#!/usr/bin/env node
// Shopping cart helpers.

import { Item } from "./item";

/** A line in the cart. */
export interface Line {
  item: Item;
  qty: number;
}

export class Cart {
  private lines: Line[] = [];

  constructor(private readonly currency: string) {}

  @logged()
  add(item: Item, qty = 1): void {
    const tmp = this.lines.find((l) => l.item.id === item.id);
    if (tmp) {
      tmp.qty += qty;
    } else {
      this.lines.push({ item, qty });
    }
  }

  /**
   * The total price, rounded to cents.
   */
  total(): number {
    const res = this.lines.reduce((acc, l) => acc + l.item.price * l.qty, 0);
    return Math.round(res * 100) / 100;
  }

  handle = (event: Event) => {
    const d = (event as any).detail ?? {};
    return d.flags & 0x0f ? d.value : null;
  };
}

export const parseQuery = (s: string): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const pair of s.split("&")) {
    const [k, v] = pair.split("=");
    out[decodeURIComponent(k)] = v;
  }
  const ok = /^[a-z]+$/i.test(s);
  return out;
};
"""

JAVASCRIPT = """\
'use strict';

const MAX = 10;

function clamp(val, lo, hi) {
  return Math.min(Math.max(val, lo), hi);
}

/**
 * Already documented.
 */
function documented(a) {
  return a;
}

class Counter {
  constructor() {
    this.count = 0;
  }

  *ticks(n) {
    for (let i = 0; i < n; i++) {
      yield (i * 37) % 11;
    }
  }
}

module.exports = { clamp, Counter, MAX };
"""
