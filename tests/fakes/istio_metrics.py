"""Generator of Istio standard metrics as OpenMetrics text, for backfilling a real Prometheus.

Describe a mesh with a few calls, then render it::

    m = IstioMetrics.recent(timedelta(days=7))             # ends at DATA_END, safely in the past
    m.http("reviews", "bookinfo", rps=1.0, error_ratio=0.1, latency_ms=120)
    m.tcp("mysql", "db", conn_per_min=6, bytes_per_conn=2048)
    m.first_request_only("ratings", "bookinfo", at=m.end - timedelta(days=2))
    m.raw("istio_requests_total", {...labels...}, [(t1, 5), (t2, 0)])  # anything else, verbatim
    text = m.openmetrics()                                  # or m.write_openmetrics(path) for big sets

Model (documented so tests can compute expected numbers exactly):

* Time grid: samples at ``start + k*step`` for every k with the instant inside ``[start, end]`` (both
  inclusive; timestamps are whole seconds). A per-series ``start``/``end`` is snapped inward to the grid.
* Counters are integers: ``value(t) = floor(rate_per_second * (t - series_first_sample))``, so a series is 0
  at its first sample. ``increase(x[W])`` at a grid instant with ``W`` a multiple of ``step`` (and the
  series present across the whole window) is exactly ``rate * W`` (up to flooring), since Prometheus does
  not extrapolate when samples sit on both window edges.
* ``http()`` emits one ``istio_requests_total`` series per response code (``error_ratio`` splits traffic
  between "200" and "500"; ``response_codes`` gives any split), and, per code, an
  ``istio_request_duration_milliseconds`` histogram whose ``_count`` equals that code's request counter.
  ``latency_ms`` is the **p99**: buckets are filled so that ``histogram_quantile(0.99, ...)`` over any
  rate()/increase() of them returns ``latency_ms``; lower quantiles fall at or below the next-lower bucket
  bound. The one bucket holding a share of the traffic has a non-integer value (the exact share, so short
  windows do not suffer rounding); all others are integers. ``_sum = latency_ms * _count``.
* ``tcp()`` emits ``istio_tcp_connections_opened_total``, ``istio_tcp_received_bytes_total`` and
  ``istio_tcp_sent_bytes_total`` (TCP metrics carry no ``response_code`` label, as in Istio).
* ``first_request_only()``: request counter (and histogram, unless ``histogram=False``) that appears at
  ``at`` with value 1 and stays 1: it exists for ``count_over_time`` but ``increase()`` reads 0.
* ``raw()``: any series, samples verbatim (counter resets, gaps, gauges...).

Output follows OpenMetrics: ``# TYPE`` per family (counter family names without ``_total``), all series
of a family together, histogram MetricPoints (buckets, ``_count``, ``_sum``) grouped per timestamp,
increasing timestamps per series, timestamps in seconds, final ``# EOF``.

Size (what makes backfill slow; promtool parses ~60 MB/s): every sample line repeats ~16 labels (~450
bytes); an ``http()`` call is 1 counter + 22 histogram series per response code and reporter. Per service and
week: ~0.08 MB counter-only / ~1.8 MB with histogram at a 1 h step, 12x that at 5 min. So keep 5 min steps
to a day or two (enough for rate(...[5m])), use 1 h steps for week-long data (then windows must span >= 2
samples: increase(...[1h]) works, rate(...[5m]) returns nothing), and ``histogram=False`` for bulk
background services. 5,000 services x 7 d x 1 h counter-only: ~0.5 GB, ~1 s to write, ~6 s to backfill;
with histograms it would be ~11 GB.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping, Sequence

__all__ = [
    "ISTIO_DURATION_BUCKETS",
    "DATA_END",
    "default_data_end",
    "IstioMetrics",
]

#: Istio's default buckets for istio_request_duration_milliseconds (``+Inf`` is added on output).
ISTIO_DURATION_BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)

_EPS = 1e-6  # absorbs float error before flooring (0.29 * 100 == 28.999999999999996)


def default_data_end(now: datetime | None = None) -> datetime:
    """``now - 4 h`` floored to the hour (UTC): late enough to be recent, early enough that promtool's
    backfill never touches Prometheus's head block range (~last 3 h)."""
    now = now or datetime.now(timezone.utc)
    t = now.astimezone(timezone.utc) - timedelta(hours=4)
    return t.replace(minute=0, second=0, microsecond=0)


#: Fixed once per process so identical datasets built by different tests hash identically.
DATA_END: datetime = default_data_end()


def _epoch(t: datetime | int | float) -> int:
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError(f"naive datetime {t!r}: use timezone-aware (UTC) datetimes")
        t = t.timestamp()
    if t != int(t):
        raise ValueError(f"timestamps must be whole seconds, got {t!r}")
    return int(t)


def _seconds(d: timedelta | int | float) -> int:
    s = d.total_seconds() if isinstance(d, timedelta) else d
    if s <= 0 or s != int(s):
        raise ValueError(f"step must be a positive whole number of seconds, got {d!r}")
    return int(s)


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labelstr(labels: Mapping[str, str]) -> str:
    return ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())


def _fmt(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _family_of(name: str, mtype: str) -> str:
    if mtype == "counter":
        if not name.endswith("_total"):
            raise ValueError(f"counter sample name must end with _total: {name!r}")
        return name[: -len("_total")]
    if mtype == "histogram":
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        raise ValueError(f"histogram sample name must end with _bucket/_count/_sum: {name!r}")
    return name


class IstioMetrics:
    """A synthetic Istio mesh over ``[start, end]`` sampled every ``step`` (see module docstring)."""

    def __init__(self, start: datetime, end: datetime, step: timedelta = timedelta(minutes=5)):
        self.start_s, self.end_s, self.step_s = _epoch(start), _epoch(end), _seconds(step)
        if self.end_s < self.start_s:
            raise ValueError("end before start")
        self._n = (self.end_s - self.start_s) // self.step_s + 1
        # family -> (type, [series spec]); insertion order == output order.
        self._families: dict[str, tuple[str, list[tuple]]] = {}

    @classmethod
    def recent(cls, duration: timedelta = timedelta(days=7), step: timedelta = timedelta(minutes=5),
               end: datetime | None = None) -> "IstioMetrics":
        """Dataset covering ``duration`` up to ``end`` (default :data:`DATA_END`, i.e. now - 4 h)."""
        end = end or DATA_END
        return cls(end - duration, end, step)

    # ---------------------------------------------------------------- properties
    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_s, timezone.utc)

    @property
    def end(self) -> datetime:
        """Last grid instant with data: the natural ``time=`` for instant queries."""
        return datetime.fromtimestamp(self.start_s + (self._n - 1) * self.step_s, timezone.utc)

    @property
    def step(self) -> timedelta:
        return timedelta(seconds=self.step_s)

    def series_count(self) -> int:
        """Number of time series that will be emitted."""
        n = 0
        for _, specs in self._families.values():
            for spec in specs:
                n += len(ISTIO_DURATION_BUCKETS) + 3 if spec[0] == "hist" else 1
        return n

    # ---------------------------------------------------------------- builders
    def http(self, dst_service: str, dst_namespace: str, src_workload: str = "caller",
             src_namespace: str = "default", version: str = "v1", rps: float = 1.0,
             error_ratio: float = 0.0, latency_ms: float = 20, start: datetime | None = None,
             end: datetime | None = None, reporter: str = "destination",
             response_codes: Mapping[str | int, float] | None = None, *, protocol: str = "http",
             histogram: bool = True, labels: Mapping[str, str] | None = None) -> "IstioMetrics":
        """Steady HTTP traffic ``src_workload -> dst_service`` at ``rps``.

        ``response_codes`` maps code -> share of traffic (shares must sum to 1) and overrides
        ``error_ratio`` (which means ``{"200": 1-e, "500": e}``). ``reporter`` is "destination", "source"
        or "both". ``latency_ms`` is the p99 (see module docstring). ``labels`` overrides/extends any label.
        """
        codes = self._codes(error_ratio, response_codes)
        i0, i1 = self._window(start, end)
        for rep in self._reporters(reporter):
            for code, share in codes.items():
                lab = self._labels(rep, dst_service, dst_namespace, src_workload, src_namespace, version,
                                   protocol, labels, response_code=code)
                ls = _labelstr(lab)
                rate = rps * share
                self._add("istio_requests", "counter", ("lin", "istio_requests_total", ls, i0, i1, rate, 0))
                if histogram:
                    self._add("istio_request_duration_milliseconds", "histogram",
                              ("hist", "istio_request_duration_milliseconds", ls, i0, i1, rate, 0,
                               float(latency_ms)))
        return self

    def tcp(self, dst_service: str, dst_namespace: str, src_workload: str = "caller",
            conn_per_min: float = 1.0, bytes_per_conn: float = 1024, start: datetime | None = None,
            end: datetime | None = None, *, src_namespace: str = "default", version: str = "v1",
            sent_bytes_per_conn: float | None = None, reporter: str = "destination",
            labels: Mapping[str, str] | None = None) -> "IstioMetrics":
        """Steady TCP traffic: ``conn_per_min`` connections opened, each receiving ``bytes_per_conn``
        bytes and sending ``sent_bytes_per_conn`` (default: same) bytes."""
        sent = bytes_per_conn if sent_bytes_per_conn is None else sent_bytes_per_conn
        i0, i1 = self._window(start, end)
        cps = conn_per_min / 60.0
        for rep in self._reporters(reporter):
            lab = self._labels(rep, dst_service, dst_namespace, src_workload, src_namespace, version,
                               "tcp", labels, response_code=None)
            ls = _labelstr(lab)
            self._add("istio_tcp_connections_opened", "counter",
                      ("lin", "istio_tcp_connections_opened_total", ls, i0, i1, cps, 0))
            self._add("istio_tcp_received_bytes", "counter",
                      ("lin", "istio_tcp_received_bytes_total", ls, i0, i1, cps * bytes_per_conn, 0))
            self._add("istio_tcp_sent_bytes", "counter",
                      ("lin", "istio_tcp_sent_bytes_total", ls, i0, i1, cps * sent, 0))
        return self

    def first_request_only(self, dst_service: str, dst_namespace: str, at: datetime, *,
                           src_workload: str = "caller", src_namespace: str = "default",
                           version: str = "v1", reporter: str = "destination", response_code: str = "200",
                           latency_ms: float = 20, histogram: bool = True,
                           labels: Mapping[str, str] | None = None) -> "IstioMetrics":
        """One request ever: the counter appears at ``at`` (snapped up to the grid) with value 1 and
        stays 1 until the end, so ``increase()`` reads 0 while ``count_over_time()`` sees the series."""
        i0, i1 = self._window(at, None)
        for rep in self._reporters(reporter):
            lab = self._labels(rep, dst_service, dst_namespace, src_workload, src_namespace, version,
                               "http", labels, response_code=str(response_code))
            ls = _labelstr(lab)
            self._add("istio_requests", "counter", ("lin", "istio_requests_total", ls, i0, i1, 0.0, 1))
            if histogram:
                self._add("istio_request_duration_milliseconds", "histogram",
                          ("hist", "istio_request_duration_milliseconds", ls, i0, i1, 0.0, 1,
                           float(latency_ms)))
        return self

    def raw(self, name: str, labels: Mapping[str, str],
            samples: Iterable[tuple[datetime | int | float, float]], type: str = "counter") -> "IstioMetrics":
        """A series with exactly these samples ``(time, value)`` (time: aware datetime or epoch seconds,
        strictly increasing; values verbatim, so counter resets are possible). ``name`` is the sample
        name (``..._total`` for counters, ``..._bucket``/``_sum``/``_count`` for histogram parts);
        ``type`` is the OpenMetrics family type: counter, gauge, histogram, unknown."""
        pts = [(_epoch(t), float(v) if not isinstance(v, int) else v) for t, v in samples]
        for (a, _), (b, _) in zip(pts, pts[1:]):
            if b <= a:
                raise ValueError(f"raw samples for {name} must have strictly increasing timestamps")
        self._add(_family_of(name, type), type, ("raw", name, _labelstr(labels), tuple(pts)))
        return self

    # ---------------------------------------------------------------- output
    def openmetrics(self) -> str:
        """The whole dataset as OpenMetrics text (ends with ``# EOF``)."""
        buf = io.StringIO()
        self.write_openmetrics(buf)
        return buf.getvalue()

    def write_openmetrics(self, dest: str | os.PathLike | io.TextIOBase) -> int:
        """Stream the OpenMetrics text to a path or text file object; returns characters written."""
        if isinstance(dest, (str, os.PathLike)):
            with open(dest, "w", encoding="utf-8", buffering=1 << 20) as f:
                return self.write_openmetrics(f)
        written = 0
        for chunk in self._chunks():
            dest.write(chunk)
            written += len(chunk)
        return written

    def fingerprint(self) -> str:
        """Stable hash of the dataset's content (same description -> same data), cheap to compute."""
        h = hashlib.sha256(repr((self.start_s, self.end_s, self.step_s)).encode())
        for fam, (mtype, specs) in self._families.items():
            h.update(repr((fam, mtype)).encode())
            for spec in specs:
                h.update(repr(spec).encode())
        return h.hexdigest()

    # ---------------------------------------------------------------- internals
    def _chunks(self) -> Iterable[str]:
        ts = [f" {self.start_s + i * self.step_s}\n" for i in range(self._n)]
        for fam, (mtype, specs) in self._families.items():
            yield f"# TYPE {fam} {mtype}\n"
            for spec in specs:
                kind = spec[0]
                if kind == "lin":
                    yield self._render_linear(spec, ts)
                elif kind == "hist":
                    yield self._render_hist(spec, ts)
                else:
                    _, name, ls, pts = spec
                    prefix = f"{name}{{{ls}}} "
                    yield "".join(f"{prefix}{_fmt(v)} {t}\n" for t, v in pts)
        yield "# EOF\n"

    def _counts(self, i0: int, i1: int, rate: float, offset: int) -> list[int]:
        step, floor = self.step_s, math.floor
        if rate == 0:
            return [offset] * (i1 - i0 + 1)
        return [offset + floor(rate * step * k + _EPS) for k in range(i1 - i0 + 1)]

    def _render_linear(self, spec: tuple, ts: list[str]) -> str:
        _, name, ls, i0, i1, rate, offset = spec
        prefix = f"{name}{{{ls}}} "
        counts = self._counts(i0, i1, rate, offset)
        return "".join([prefix + str(c) + t for c, t in zip(counts, ts[i0:i1 + 1])])

    def _render_hist(self, spec: tuple, ts: list[str]) -> str:
        _, name, ls, i0, i1, rate, offset, latency = spec
        sep = "," if ls else ""
        bounds = [str(b) if b != int(b) else str(int(b)) for b in ISTIO_DURATION_BUCKETS] + ["+Inf"]
        prefixes = [f'{name}_bucket{{{ls}{sep}le="{b}"}} ' for b in bounds]
        hi, frac = _p99_split(latency)
        # buckets [0, hi-1) hold 0, bucket hi-1 holds frac*count, buckets [hi, ...) hold count.
        zero_p = prefixes[: max(hi - 1, 0)]
        mid_p = prefixes[hi - 1] if hi >= 1 else None
        full_p = prefixes[hi:]
        cnt_p, sum_p = f"{name}_count{{{ls}}} ", f"{name}_sum{{{ls}}} "
        out = []
        for c, t in zip(self._counts(i0, i1, rate, offset), ts[i0:i1 + 1]):
            cs = str(c)
            out.extend([p + "0" + t for p in zero_p])
            if mid_p is not None:
                out.append(mid_p + _fmt(frac * c) + t)  # unfloored: exact ratio for any window
            out.extend([p + cs + t for p in full_p])
            out.append(cnt_p + cs + t)
            out.append(sum_p + _fmt(latency * c) + t)
        return "".join(out)

    def _add(self, family: str, mtype: str, spec: tuple) -> None:
        have = self._families.setdefault(family, (mtype, []))
        if have[0] != mtype:
            raise ValueError(f"family {family} is a {have[0]}, not a {mtype}")
        have[1].append(spec)

    def _window(self, start: datetime | None, end: datetime | None) -> tuple[int, int]:
        s = self.start_s if start is None else _epoch(start)
        e = self.end_s if end is None else _epoch(end)
        i0 = max(0, -(-(s - self.start_s) // self.step_s))  # ceil: snap inward
        i1 = min(self._n - 1, (e - self.start_s) // self.step_s)
        if i1 < i0:
            raise ValueError(f"window {start}..{end} holds no grid instant of {self.start}..{self.end}")
        return i0, i1

    @staticmethod
    def _reporters(reporter: str) -> Sequence[str]:
        if reporter == "both":
            return ("source", "destination")
        if reporter not in ("source", "destination"):
            raise ValueError(f"reporter must be source, destination or both, not {reporter!r}")
        return (reporter,)

    @staticmethod
    def _codes(error_ratio: float, response_codes: Mapping[str | int, float] | None) -> dict[str, float]:
        if response_codes is None:
            if not 0 <= error_ratio <= 1:
                raise ValueError("error_ratio must be within [0, 1]")
            response_codes = {"200": 1 - error_ratio, "500": error_ratio}
        codes = {str(k): float(v) for k, v in response_codes.items() if v > 0}
        if not codes or abs(sum(codes.values()) - 1) > 1e-9:
            raise ValueError(f"response_codes shares must sum to 1: {response_codes!r}")
        return codes

    @staticmethod
    def _labels(reporter: str, svc: str, ns: str, src: str, src_ns: str, version: str, protocol: str,
                extra: Mapping[str, str] | None, response_code: str | None) -> dict[str, str]:
        lab = {
            "reporter": reporter,
            "source_workload": src,
            "source_workload_namespace": src_ns,
            "source_app": src,
            "source_version": "v1",
            "destination_service": f"{svc}.{ns}.svc.cluster.local",
            "destination_service_name": svc,
            "destination_service_namespace": ns,
            "destination_workload": f"{svc}-{version}",
            "destination_workload_namespace": ns,
            "destination_app": svc,
            "destination_version": version,
            "request_protocol": protocol,
            "response_code": response_code,
            "response_flags": "-",
            "connection_security_policy": "mutual_tls" if reporter == "destination" else "unknown",
        }
        if response_code is None:
            del lab["response_code"]
        if extra:
            lab.update(extra)
        return lab


def _p99_split(latency: float) -> tuple[int, float]:
    """Bucket layout making histogram_quantile(0.99) == latency.

    Returns ``(hi, frac)``: bucket index ``hi`` is the first with bound > latency; bucket ``hi-1`` (bound
    ``lo <= latency``) gets ``frac`` of the observations, all buckets from ``hi`` on get all of them.
    With ``r = (latency-lo)/(bound_hi-lo)``, quantile 0.99 interpolates to ``lo + r*(bound_hi-lo)`` when
    ``frac = (0.99-r)/(1-r)``.
    """
    bounds = ISTIO_DURATION_BUCKETS
    hi = next((i for i, b in enumerate(bounds) if b > latency), len(bounds))
    if hi == 0:  # below the first bound: everything in the first bucket
        return 0, 1.0
    if hi == len(bounds):  # beyond the last finite bound: +Inf bucket, quantile reads the last bound
        return hi, 0.0
    lo, up = bounds[hi - 1], bounds[hi]
    r = (latency - lo) / (up - lo)
    return hi, max(0.0, (0.99 - r) / (1 - r))
