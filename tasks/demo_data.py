"""Seeded generator of daily card-transaction batches for the demo pipeline.

Each day is one Parquet file, `<out_dir>/<YYYY-MM-DD>.parquet`, whose stem is the batch id. Rows are
card transactions drawn from a fixed pool of customers: shared latent customer factors (wealth,
activity, age, tenure, home country) drive amounts, 7-day averages, credit limits, utilisation,
velocity and channel habits, so the numeric columns are correlated the way real ones are.

About 2% of rows are injected anomalies (`is_injected_anomaly` = 1) of five kinds (see
tasks/demo_anomalies.py); one day can be drifted (shifted distributions, valid schema) and one day
malformed (a schema break a data contract must catch). The channels, merchant categories, countries
and customers are in tasks/demo_world.py. Everything is a function of the seed: the same seed gives
byte-identical files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.demo_anomalies import ANOMALY_KINDS, inject_anomalies
from tasks.demo_world import (
    ATM,
    CATEGORY_KIND,
    CATEGORY_LOG_SCALE,
    CATEGORY_NAMES,
    CATEGORY_RISK_LOGIT,
    CATEGORY_WEIGHTS,
    CHANNELS,
    COUNTRY_CODES,
    COUNTRY_DISTANCE_KM,
    HOURLY_INTENSITY,
    MERCHANT_CATEGORIES,
    MOBILE_WALLET,
    ONLINE,
    ONLINE_ONLY,
    REMOTE_COUNTRY_P,
    TRAVEL_DESTINATION_P,
    Customers,
    draw_channels,
    make_customers,
    sample_rows,
    sigmoid,
)

DEMO_DATASET = "demo"

ID_COLUMN = "transaction_id"
TIMESTAMP_COLUMN = "event_time"
LABEL_COLUMN = "is_injected_anomaly"
NUMERIC_COLUMNS: tuple[str, ...] = (
    "amount",
    "amount_7d_avg",
    "merchant_risk_score",
    "distance_from_home_km",
    "seconds_since_last_tx",
    "tx_count_24h",
    "customer_age",
    "account_age_days",
    "credit_limit",
    "balance_ratio",
)
CATEGORICAL_COLUMNS: tuple[str, ...] = ("merchant_category", "channel", "country")

SCHEMA = pa.schema(
    [
        (ID_COLUMN, pa.string()),
        (TIMESTAMP_COLUMN, pa.timestamp("us", tz="UTC")),
        ("amount", pa.float64()),
        ("amount_7d_avg", pa.float64()),
        ("merchant_risk_score", pa.float64()),
        ("distance_from_home_km", pa.float64()),
        ("seconds_since_last_tx", pa.int64()),
        ("tx_count_24h", pa.int64()),
        ("customer_age", pa.int64()),
        ("account_age_days", pa.int64()),
        ("credit_limit", pa.float64()),
        ("balance_ratio", pa.float64()),
        ("merchant_category", pa.string()),
        ("channel", pa.string()),
        ("country", pa.string()),
        (LABEL_COLUMN, pa.int8()),
    ]
)

# Missing-completely-at-random rates per column (id, timestamp, label and integers stay complete).
MISSING_RATES: dict[str, float] = {
    "amount_7d_avg": 0.02,
    "merchant_risk_score": 0.015,
    "distance_from_home_km": 0.03,
    "credit_limit": 0.01,
    "balance_ratio": 0.02,
    "merchant_category": 0.02,
    "country": 0.015,
}

MALFORMED_MISSING_COLUMN = "merchant_risk_score"
MALFORMED_STRING_COLUMN = "amount"
MALFORMATION_KIND = "missing_merchant_risk_score+amount_as_string"

# Drift day: prices up (amount_7d_avg lags behind amount), shoppers move online, holiday categories.
DRIFT_AMOUNT_FACTOR = 1.8
DRIFT_AVG_AMOUNT_FACTOR = 1.35
DRIFT_ONLINE_LOGIT_SHIFT = 1.2
DRIFT_CATEGORY_BOOST: dict[str, float] = {
    "electronics_stores": 5.0,
    "airlines": 5.0,
    "hotels_motels": 4.0,
    "toy_stores": 4.0,
}

MIN_ROWS_PER_DAY = 200
CUSTOMER_POOL_SIZE = 20_000
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 3

_SECONDS_PER_DAY = 86_400
_MICROS_PER_SECOND = 1_000_000


@dataclass(frozen=True)
class DemoManifest:
    """What `generate_demo_data` wrote.

    `paths`, `batch_ids` and `rows_per_file` are in day order; `drift_day` and `malformed_day` are
    resolved (non-negative) day indices or None. `anomaly_counts` totals injected anomalies per kind
    over all files; `anomaly_counts_per_file[i]` holds the same for file i.
    """

    dataset: str
    seed: int
    start_date: str
    days: int
    paths: list[str]
    batch_ids: list[str]
    rows_per_file: list[int]
    drift_day: int | None
    malformed_day: int | None
    malformation_kind: str | None
    anomaly_counts: dict[str, int]
    anomaly_counts_per_file: list[dict[str, int]]

    @property
    def drift_batch_id(self) -> str | None:
        return None if self.drift_day is None else self.batch_ids[self.drift_day]

    @property
    def malformed_batch_id(self) -> str | None:
        return None if self.malformed_day is None else self.batch_ids[self.malformed_day]

    @property
    def total_rows(self) -> int:
        return sum(self.rows_per_file)

    def to_json(self) -> str:
        """The manifest as indented, key-sorted JSON text."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DemoManifest:
        return cls(**json.loads(text))


def _resolve_day(name: str, value: int | None, days: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int or None, got {value!r}")
    resolved = int(value) + days if value < 0 else int(value)
    if not 0 <= resolved < days:
        raise ValueError(f"{name} must be in [-{days}, {days - 1}] for days={days}, got {value}")
    return resolved


def _require_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _generate_day_table(
    customers: Customers,
    rng: np.random.Generator,
    day: date,
    rows: int,
    drifted: bool,
) -> tuple[pa.Table, dict[str, int]]:
    """One day of transactions as an Arrow table with `SCHEMA`, and anomaly counts per kind."""
    n = rows

    # Event times: hour from the daily profile, uniform inside the hour; rows are exchangeable,
    # so sorting the times alone keeps the table ordered without permuting anything else.
    drawn_hour = rng.choice(24, size=n, p=HOURLY_INTENSITY)
    micros_in_day = (drawn_hour * 3600 + rng.random(n) * 3600) * _MICROS_PER_SECOND
    last_micro = _SECONDS_PER_DAY * _MICROS_PER_SECOND - 1
    micros_in_day = np.sort(np.minimum(micros_in_day.astype(np.int64), last_micro))
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    day_start_micros = int(day_start.timestamp()) * _MICROS_PER_SECOND
    event_micros = day_start_micros + micros_in_day
    hour = micros_in_day // (3600 * _MICROS_PER_SECOND)  # of each sorted row

    customer = rng.choice(customers.age.shape[0], size=n, p=customers.transaction_weight)
    age = customers.age[customer].copy()
    account_age_days = customers.account_age_days[customer].copy()
    credit_limit = customers.credit_limit[customer].copy()
    home = customers.home_country[customer]

    category_weights = CATEGORY_WEIGHTS.copy()
    if drifted:
        for name, boost in DRIFT_CATEGORY_BOOST.items():
            category_weights[name == CATEGORY_NAMES] *= boost
        category_weights /= category_weights.sum()
    category = rng.choice(len(MERCHANT_CATEGORIES), size=n, p=category_weights)
    online_shift = DRIFT_ONLINE_LOGIT_SHIFT if drifted else 0.0
    channel = draw_channels(rng, category, age.astype(np.float64), online_shift)
    remote = (channel == ONLINE) | (
        (channel == MOBILE_WALLET) & (CATEGORY_KIND[category] == ONLINE_ONLY)
    )

    # Merchant country: remote payments follow the e-commerce mix, in-person ones are domestic
    # unless the customer is travelling.
    travelling = ~remote & (rng.random(n) < customers.travel_share[customer])
    country = home.copy()
    country[travelling] = sample_rows(rng, TRAVEL_DESTINATION_P[home[travelling]])
    country[remote] = sample_rows(rng, REMOTE_COUNTRY_P[home[remote]])
    foreign = country != home

    # Distance of the payment from the cardholder's home: device location for remote payments,
    # mostly local in person, country-to-country distance when abroad.
    distance = np.exp(np.log(6.0) + 1.0 * rng.standard_normal(n))
    domestic_trip = ~remote & ~foreign & (rng.random(n) < 0.03)
    distance[domestic_trip] = np.exp(np.log(300.0) + 0.8 * rng.standard_normal(domestic_trip.sum()))
    distance[remote] = np.exp(np.log(4.0) + 1.0 * rng.standard_normal(remote.sum()))
    abroad = ~remote & foreign
    distance[abroad] = COUNTRY_DISTANCE_KM[home[abroad], country[abroad]] * np.exp(
        0.2 * rng.standard_normal(abroad.sum())
    )

    # Amounts: customer's typical ticket x category scale x noise; cash comes in multiples of 20.
    amount_factor = DRIFT_AMOUNT_FACTOR if drifted else 1.0
    log_typical = customers.log_typical_amount[customer]
    amount = (
        np.exp(log_typical + CATEGORY_LOG_SCALE[category] + 0.55 * rng.standard_normal(n))
        * amount_factor
    )
    atm = channel == ATM
    amount[atm] = np.maximum(20.0, np.round(amount[atm] / 20.0) * 20.0)
    amount = np.maximum(0.5, np.round(amount, 2))
    # The 7-day average is the customer's mean ticket over the usual category mix.
    mean_ticket_offset = np.log(np.sum(CATEGORY_WEIGHTS * np.exp(CATEGORY_LOG_SCALE + 0.55**2 / 2)))
    avg_factor = DRIFT_AVG_AMOUNT_FACTOR if drifted else 1.0
    amount_7d_avg = np.round(
        np.exp(log_typical + mean_ticket_offset + 0.2 * rng.standard_normal(n)) * avg_factor, 2
    )

    night = hour < 5
    risk_logit = (
        CATEGORY_RISK_LOGIT[category]
        + 0.7 * remote
        + 0.8 * foreign
        + 0.4 * night
        + 0.45 * rng.standard_normal(n)
    )
    merchant_risk_score = np.round(sigmoid(risk_logit), 4)

    # Velocity: previous transactions in the last 24 h (over-dispersed Poisson); the time since
    # the last one is the nearest of those, or more than a day when there was none.
    daily_rate = customers.daily_rate[customer] * rng.gamma(5.0, 0.2, n)
    tx_count_24h = rng.poisson(daily_rate).astype(np.int64)
    nearest_fraction = 1.0 - rng.random(n) ** (1.0 / np.maximum(tx_count_24h, 1))
    quiet_seconds = _SECONDS_PER_DAY + rng.exponential(
        _SECONDS_PER_DAY / customers.daily_rate[customer]
    )
    seconds_since_last_tx = np.where(
        tx_count_24h > 0, nearest_fraction * _SECONDS_PER_DAY, quiet_seconds
    )
    seconds_since_last_tx = np.maximum(1, np.round(seconds_since_last_tx)).astype(np.int64)

    balance_ratio = np.round(
        np.clip(
            customers.base_utilisation[customer]
            + 0.5 * amount / credit_limit
            + 0.04 * rng.standard_normal(n),
            0.0,
            1.0,
        ),
        4,
    )

    numeric = {
        "amount": amount,
        "amount_7d_avg": amount_7d_avg,
        "merchant_risk_score": merchant_risk_score,
        "distance_from_home_km": np.round(distance, 2),
        "seconds_since_last_tx": seconds_since_last_tx,
        "tx_count_24h": tx_count_24h,
        "customer_age": age,
        "account_age_days": account_age_days,
        "credit_limit": credit_limit,
        "balance_ratio": balance_ratio,
    }
    categorical = {"merchant_category": category, "channel": channel, "country": country}
    label, counts, touched = inject_anomalies(rng, numeric, categorical)

    masks = {}
    for column, rate in MISSING_RATES.items():
        # Injected values stay visible: an anomaly hidden behind a null is not an anomaly.
        masks[column] = (rng.random(n) < rate) & ~touched.get(column, np.zeros(n, dtype=bool))

    width = max(7, len(str(n)))
    sequence = pc.utf8_lpad(pa.array(np.arange(1, n + 1)).cast(pa.string()), width, "0")
    ids = pc.binary_join_element_wise(f"tx-{day:%Y%m%d}-", sequence, "")
    columns: dict[str, pa.Array] = {
        ID_COLUMN: ids,
        TIMESTAMP_COLUMN: pa.array(event_micros, type=pa.timestamp("us", tz="UTC")),
    }
    for column, values in numeric.items():
        columns[column] = pa.array(values, type=SCHEMA.field(column).type, mask=masks.get(column))
    levels = {
        "merchant_category": pa.array(CATEGORY_NAMES.tolist(), type=pa.string()),
        "channel": pa.array(list(CHANNELS), type=pa.string()),
        "country": pa.array(COUNTRY_CODES.tolist(), type=pa.string()),
    }
    for column, codes in categorical.items():
        indices = pa.array(codes.astype(np.int32), mask=masks.get(column))
        columns[column] = levels[column].take(indices)
    columns[LABEL_COLUMN] = pa.array(label, type=pa.int8())
    return pa.Table.from_pydict(columns, schema=SCHEMA), counts


def _malform(table: pa.Table) -> pa.Table:
    """Break the schema the way a faulty upstream export would: drop a column, stringify one."""
    table = table.drop_columns([MALFORMED_MISSING_COLUMN])
    position = table.schema.get_field_index(MALFORMED_STRING_COLUMN)
    as_text = pc.cast(table.column(MALFORMED_STRING_COLUMN), pa.string())
    return table.set_column(position, pa.field(MALFORMED_STRING_COLUMN, pa.string()), as_text)


def _write_parquet(table: pa.Table, path: Path) -> None:
    # Fixed writer settings so equal tables give equal bytes; pyarrow stores no timestamps.
    pq.write_table(
        table,
        path,
        compression=PARQUET_COMPRESSION,
        compression_level=PARQUET_COMPRESSION_LEVEL,
        row_group_size=max(table.num_rows, 1),
        use_dictionary=True,
        write_statistics=True,
    )


# The demo's drifted and malformed days, counted from the end; fewer days than this have neither.
DEFAULT_DRIFT_DAY, DEFAULT_MALFORMED_DAY = -3, -2


def default_special_days(days: int) -> tuple[int | None, int | None]:
    """(drift_day, malformed_day) for ``days`` days: the third-last and second-last day, or none
    when there are fewer than 3 days (every day is then a plain day)."""
    if days < -DEFAULT_DRIFT_DAY:
        return None, None
    return DEFAULT_DRIFT_DAY, DEFAULT_MALFORMED_DAY


def generate_demo_data(
    out_dir: str | Path,
    days: int = 10,
    rows_per_day: int = 20_000,
    seed: int = 0,
    start_date: str = "2026-01-01",
    drift_day: int | None = -3,
    malformed_day: int | None = -2,
) -> DemoManifest:
    """Write `days` daily Parquet batches of card transactions into `out_dir`.

    Files are `<out_dir>/<YYYY-MM-DD>.parquet`, one per day from `start_date`, each with
    `rows_per_day` rows (schema `SCHEMA`, except on the malformed day). `drift_day` and
    `malformed_day` are day indices (negative counts from the end, None for no such day) and must
    differ. Day i depends only on (seed, i, rows_per_day, start_date and whether it is drifted or
    malformed), so adding days does not change earlier files. Nothing but these Parquet files is
    written to `out_dir`; existing files with the same names are replaced, others are left alone.
    """
    days = _require_int("days", days, 1)
    rows_per_day = _require_int("rows_per_day", rows_per_day, MIN_ROWS_PER_DAY)
    seed = _require_int("seed", seed, 0)
    try:
        first_day = date.fromisoformat(start_date)
    except (TypeError, ValueError):
        raise ValueError(f"start_date must be an ISO date YYYY-MM-DD, got {start_date!r}") from None
    drift_index = _resolve_day("drift_day", drift_day, days)
    malformed_index = _resolve_day("malformed_day", malformed_day, days)
    if drift_index is not None and drift_index == malformed_index:
        raise ValueError(
            f"drift_day and malformed_day must be different days, both resolve to {drift_index}"
        )

    out_path = Path(out_dir)
    if out_path.exists() and not out_path.is_dir():
        raise NotADirectoryError(f"out_dir must be a directory, got the file {out_path}")
    out_path.mkdir(parents=True, exist_ok=True)

    customers = make_customers(np.random.default_rng([seed, 0]), CUSTOMER_POOL_SIZE)
    paths: list[str] = []
    batch_ids: list[str] = []
    rows_per_file: list[int] = []
    counts_per_file: list[dict[str, int]] = []
    for index in range(days):
        day = first_day + timedelta(days=index)
        rng = np.random.default_rng([seed, 1, index])
        table, counts = _generate_day_table(
            customers, rng, day, rows_per_day, drifted=index == drift_index
        )
        if index == malformed_index:
            table = _malform(table)
        batch_id = day.isoformat()
        path = out_path / f"{batch_id}.parquet"
        _write_parquet(table, path)
        paths.append(str(path))
        batch_ids.append(batch_id)
        rows_per_file.append(table.num_rows)
        counts_per_file.append(counts)

    return DemoManifest(
        dataset=DEMO_DATASET,
        seed=seed,
        start_date=first_day.isoformat(),
        days=days,
        paths=paths,
        batch_ids=batch_ids,
        rows_per_file=rows_per_file,
        drift_day=drift_index,
        malformed_day=malformed_index,
        malformation_kind=None if malformed_index is None else MALFORMATION_KIND,
        anomaly_counts={k: sum(c[k] for c in counts_per_file) for k in ANOMALY_KINDS},
        anomaly_counts_per_file=counts_per_file,
    )
