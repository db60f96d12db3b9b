import re

SKU = re.compile(r"^[A-Z]{3}-\d{4}$")


def parse_line(s):
    parts = [p.strip() for p in s.split(",") if p.strip()]
    if len(parts) != 3 or not SKU.match(parts[0]):
        raise ValueError(f"bad line: {s!r}")
    return parts
