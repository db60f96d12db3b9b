# Input of the documentation benchmark (bench/docs/run.py): an ordinary module with twelve
# functions and no docstrings. It must stay 300 lines long, with twelve undocumented functions.

from __future__ import annotations

import gzip
import ipaddress
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

LINE = re.compile(
    r'^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) '
    r'(?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referrer>[^"]*)" "(?P<agent>[^"]*)"(?: (?P<duration>\d+(?:\.\d+)?))?$'
)
TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
BOT_WORDS = ("bot", "crawler", "spider", "slurp", "curl", "wget", "python-requests")
STATIC_SUFFIXES = (".css", ".js", ".png", ".jpg", ".svg", ".ico", ".woff2", ".map")
PRIVATE_NETWORKS = [
    ipaddress.ip_network(network)
    for network in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128")
]
SLOW_REQUEST_MS = 1500.0
BUCKET = timedelta(minutes=5)

Record = dict[str, str | int | float | datetime | None]


def open_log(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line and not line.startswith("#"):
                yield line


def parse_line(line: str) -> Record | None:
    match = LINE.match(line)
    if match is None:
        return None
    fields = match.groupdict()
    try:
        when = datetime.strptime(fields["time"], TIME_FORMAT).astimezone(UTC)
    except ValueError:
        return None
    size = 0 if fields["size"] == "-" else int(fields["size"])
    duration = fields.get("duration")
    path, _, query = fields["path"].partition("?")
    return {
        "client": fields["client"],
        "user": None if fields["user"] == "-" else fields["user"],
        "time": when,
        "method": fields["method"],
        "path": path,
        "query": query or None,
        "status": int(fields["status"]),
        "size": size,
        "referrer": None if fields["referrer"] in ("", "-") else fields["referrer"],
        "agent": fields["agent"],
        "duration_ms": float(duration) if duration else None,
    }


def is_bot(agent: str) -> bool:
    lowered = agent.lower()
    if not lowered or lowered == "-":
        return True
    if any(word in lowered for word in BOT_WORDS):
        return True
    # Headless browsers announce themselves, real ones name an engine.
    if "headless" in lowered:
        return True
    return not any(engine in lowered for engine in ("gecko", "webkit", "trident", "presto"))


def is_internal(client: str) -> bool:
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in PRIVATE_NETWORKS)


def normalize_path(path: str) -> str:
    parts = []
    for part in path.split("/"):
        if not part:
            continue
        if part.isdigit():
            parts.append(":id")
        elif re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", part):
            parts.append(":uuid")
        elif re.fullmatch(r"[0-9a-f]{24,64}", part):
            parts.append(":hash")
        else:
            parts.append(part.lower())
    normalized = "/" + "/".join(parts)
    if normalized.endswith(STATIC_SUFFIXES):
        return "/:static"
    return normalized


def read_records(
    paths: Iterable[Path], *, skip_bots: bool = True, skip_internal: bool = False
) -> tuple[list[Record], int]:
    records: list[Record] = []
    rejected = 0
    seen: set[str] = set()
    for path in paths:
        for line in open_log(path):
            # Rotated logs overlap by a few lines; keep the first copy of each.
            if line in seen:
                continue
            seen.add(line)
            record = parse_line(line)
            if record is None:
                rejected += 1
                continue
            if skip_bots and is_bot(str(record["agent"])):
                continue
            if skip_internal and is_internal(str(record["client"])):
                continue
            record["route"] = normalize_path(str(record["path"]))
            records.append(record)
    records.sort(key=lambda record: str(record["time"]))
    return records, rejected


def percentile(values: list[float], fraction: float) -> float:
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return math.nan
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
    ordered = sorted(finite)
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = math.ceil(position)
    if lower == upper:
        return ordered[lower]
    weight = position - lower
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


def route_stats(records: list[Record], *, top: int = 10) -> list[dict[str, float | str]]:
    durations: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    bytes_sent: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    for record in records:
        route = f"{record['method']} {record['route']}"
        hits[route] += 1
        size, status = record["size"], record["status"]
        if isinstance(size, int):
            bytes_sent[route] += size
        if isinstance(status, int) and status >= 500:
            errors[route] += 1
        if isinstance(record["duration_ms"], float):
            durations[route].append(record["duration_ms"])
    rows: list[dict[str, float | str]] = []
    for route, count in hits.most_common(top):
        timings = durations.get(route, [])
        rows.append(
            {
                "route": route,
                "hits": count,
                "error_rate": errors[route] / count,
                "kb_per_hit": bytes_sent[route] / count / 1024,
                "p50_ms": percentile(timings, 0.5),
                "p95_ms": percentile(timings, 0.95),
                "p99_ms": percentile(timings, 0.99),
            }
        )
    return rows


def bucket_traffic(records: list[Record], bucket: timedelta = BUCKET) -> list[tuple[datetime, int]]:
    if not records:
        return []
    width = int(bucket.total_seconds())
    counts: Counter[datetime] = Counter()
    for record in records:
        when = record["time"]
        assert isinstance(when, datetime)
        start = int(when.timestamp()) // width * width
        counts[datetime.fromtimestamp(start, UTC)] += 1
    first, last = min(counts), max(counts)
    series = []
    current = first
    while current <= last:
        # Empty buckets count as zero, so that gaps show up in the chart.
        series.append((current, counts.get(current, 0)))
        current += bucket
    return series


def find_spikes(
    series: list[tuple[datetime, int]], *, window: int = 12, threshold: float = 3.0
) -> list[tuple[datetime, int, float]]:
    if len(series) <= window:
        return []
    spikes = []
    for index in range(window, len(series)):
        history = [count for _, count in series[index - window : index]]
        mean = sum(history) / window
        variance = sum((count - mean) ** 2 for count in history) / window
        deviation = math.sqrt(variance)
        when, count = series[index]
        if deviation == 0:
            if count > 2 * mean and count > 10:
                spikes.append((when, count, math.inf))
            continue
        score = (count - mean) / deviation
        if score >= threshold:
            spikes.append((when, count, round(score, 2)))
    return spikes


def slow_clients(
    records: list[Record], *, limit: int = 5, minimum_requests: int = 20
) -> list[tuple[str, int, float]]:
    per_client: dict[str, list[float]] = defaultdict(list)
    for record in records:
        duration = record["duration_ms"]
        client = str(record["client"])
        if not isinstance(duration, float) or is_internal(client):
            # Health checks and internal jobs come from the private networks.
            continue
        per_client[client].append(duration)
    ranked = []
    for client, timings in per_client.items():
        if len(timings) < minimum_requests:
            continue
        slow = sum(1 for timing in timings if timing >= SLOW_REQUEST_MS)
        ranked.append((client, len(timings), slow / len(timings)))
    ranked.sort(key=lambda row: (-row[2], -row[1], row[0]))
    return ranked[:limit]


def render_report(paths: list[Path], *, width: int = 100) -> str:
    records, rejected = read_records(paths)
    if not records:
        return "No requests found.\n"
    first, last = records[0]["time"], records[-1]["time"]
    assert isinstance(first, datetime)
    assert isinstance(last, datetime)
    hours = max((last - first).total_seconds() / 3600, 1 / 60)
    lines = [
        f"Access log report: {len(paths)} file(s), {len(records)} requests "
        f"({rejected} unparsable lines)",
        f"From {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC, "
        f"{len(records) / hours:.0f} requests per hour",
        "",
        "Busiest routes",
        f"{'route':<50}{'hits':>8}{'errors':>9}{'KB':>8}{'p50':>8}{'p95':>8}{'p99':>8}",
    ]
    for row in route_stats(records):
        route = str(row["route"])
        if len(route) > 48:
            route = route[:45] + "..."
        lines.append(
            f"{route:<50}{row['hits']:>8}{row['error_rate']:>9.1%}{row['kb_per_hit']:>8.1f}"
            f"{row['p50_ms']:>8.0f}{row['p95_ms']:>8.0f}{row['p99_ms']:>8.0f}"
        )
    series = bucket_traffic(records)
    spikes = find_spikes(series)
    lines += ["", f"Traffic spikes ({len(spikes)})"]
    for when, count, score in spikes[:10]:
        lines.append(f"  {when:%Y-%m-%d %H:%M}  {count:>6} requests  (z = {score})")
    lines += ["", "Clients with the most slow requests"]
    for client, count, share in slow_clients(records):
        lines.append(f"  {client:<40}{count:>8} requests{share:>8.1%} slow")
    statuses: Counter[str] = Counter()
    for record in records:
        status = record["status"]
        if isinstance(status, int):
            statuses[f"{status // 100}xx"] += 1
    lines += ["", "Responses by status class"]
    for status_class, count in sorted(statuses.items()):
        lines.append(f"  {status_class}  {count:>8}  {count / len(records):>7.1%}")
    peak = max((count for _, count in series), default=0)
    if peak:
        lines += ["", "Requests per 5 minutes"]
        for when, count in series[-24:]:
            bar = "#" * max(1, round(count / peak * (width - 30))) if count else ""
            lines.append(f"  {when:%H:%M} {count:>7} {bar}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    print(render_report([Path(argument) for argument in sys.argv[1:]]), end="")
