"""Seeded generator of daily card-transaction batches for the demo pipeline.

Each day is one Parquet file, `<out_dir>/<YYYY-MM-DD>.parquet`, whose stem is the batch id. Rows are
card transactions drawn from a fixed pool of customers: shared latent customer factors (wealth,
activity, age, tenure, home country) drive amounts, 7-day averages, credit limits, utilisation,
velocity and channel habits, so the numeric columns are correlated the way real ones are.

About 2% of rows are injected anomalies (`is_injected_anomaly` = 1) of five kinds (see
`ANOMALY_KINDS`); one day can be drifted (shifted distributions, valid schema) and one day malformed
(a schema break a data contract must catch). Everything is a function of the seed: the same seed
gives byte-identical files.
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
FEATURE_COLUMNS: tuple[str, ...] = NUMERIC_COLUMNS + CATEGORICAL_COLUMNS

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

# Share of injected anomalies per kind (2% in total); each kind gets at least one row per day.
ANOMALY_SHARES: dict[str, float] = {
    # one column set to a value that cannot happen: amount above the credit limit, age over 100,
    # distance beyond the antipode, balance over the limit, negative time since the last transaction
    "out_of_range": 0.004,
    # amount 9-25x away from the customer's own 7-day average, everything else typical
    "amount_vs_history": 0.005,
    # a top-tier credit limit on a brand-new account of a very young customer
    "credit_vs_profile": 0.004,
    # card testing: dozens of tiny online payments seconds apart at risky merchants
    "velocity_burst": 0.004,
    # category/channel/country combinations never seen in normal traffic; numerics untouched
    "rare_combination": 0.003,
}
ANOMALY_KINDS: tuple[str, ...] = tuple(ANOMALY_SHARES)

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

CHANNELS: tuple[str, ...] = ("pos", "contactless", "online", "mobile_wallet", "atm")
_POS, _CONTACTLESS, _ONLINE, _MOBILE_WALLET, _ATM = range(len(CHANNELS))

# Kinds of merchant category decide which channels they are ever seen with.
_PHYSICAL, _HYBRID, _ONLINE_ONLY, _CASH = range(4)

# (name, amount scale relative to a customer's typical ticket, base merchant risk, kind),
# listed roughly by popularity; frequencies follow a Zipf law over this order.
MERCHANT_CATEGORIES: tuple[tuple[str, float, float, int], ...] = (
    ("grocery_stores_supermarkets", 0.9, 0.08, _PHYSICAL),
    ("eating_places_restaurants", 1.0, 0.10, _PHYSICAL),
    ("fast_food_restaurants", 0.35, 0.08, _PHYSICAL),
    ("service_stations_fuel", 0.9, 0.12, _PHYSICAL),
    ("online_marketplaces", 1.2, 0.22, _ONLINE_ONLY),
    ("atm_cash_withdrawal", 2.0, 0.10, _CASH),
    ("coffee_shops", 0.15, 0.06, _PHYSICAL),
    ("drug_stores_pharmacies", 0.6, 0.07, _PHYSICAL),
    ("convenience_stores", 0.3, 0.10, _PHYSICAL),
    ("streaming_services", 0.3, 0.12, _ONLINE_ONLY),
    ("department_stores", 1.5, 0.10, _PHYSICAL),
    ("discount_stores", 0.9, 0.09, _PHYSICAL),
    ("telecom_services", 1.3, 0.06, _HYBRID),
    ("clothing_stores", 1.6, 0.12, _PHYSICAL),
    ("commuter_transport", 0.2, 0.05, _PHYSICAL),
    ("taxicabs_limousines", 0.6, 0.13, _PHYSICAL),
    ("bars_taverns", 0.7, 0.16, _PHYSICAL),
    ("utilities_electric_gas", 2.0, 0.04, _HYBRID),
    ("app_stores", 0.2, 0.18, _ONLINE_ONLY),
    ("home_supply_warehouse", 2.5, 0.10, _PHYSICAL),
    ("bakeries", 0.25, 0.06, _PHYSICAL),
    ("parking_lots_garages", 0.3, 0.07, _PHYSICAL),
    ("electronics_stores", 4.0, 0.25, _PHYSICAL),
    ("hardware_stores", 1.4, 0.09, _PHYSICAL),
    ("software_subscriptions", 0.7, 0.16, _ONLINE_ONLY),
    ("barber_beauty_shops", 0.7, 0.07, _PHYSICAL),
    ("liquor_stores", 0.6, 0.18, _PHYSICAL),
    ("hotels_motels", 4.0, 0.20, _HYBRID),
    ("airlines", 9.0, 0.28, _HYBRID),
    ("digital_goods_games", 0.4, 0.30, _ONLINE_ONLY),
    ("insurance_premiums", 3.0, 0.05, _HYBRID),
    ("shoe_stores", 1.7, 0.11, _PHYSICAL),
    ("cosmetic_stores", 0.8, 0.10, _PHYSICAL),
    ("sporting_goods", 1.8, 0.12, _PHYSICAL),
    ("automotive_service_shops", 3.5, 0.14, _PHYSICAL),
    ("doctors_physicians", 2.0, 0.05, _PHYSICAL),
    ("movie_theaters", 0.4, 0.07, _PHYSICAL),
    ("pet_shops", 0.9, 0.08, _PHYSICAL),
    ("book_stores", 0.6, 0.07, _PHYSICAL),
    ("car_washes", 0.4, 0.09, _PHYSICAL),
    ("auto_parts_stores", 1.8, 0.12, _PHYSICAL),
    ("dentists_orthodontists", 3.5, 0.05, _PHYSICAL),
    ("tobacco_stores", 0.3, 0.20, _PHYSICAL),
    ("cloud_hosting_services", 1.0, 0.17, _ONLINE_ONLY),
    ("car_rental", 5.0, 0.22, _HYBRID),
    ("toy_stores", 1.2, 0.09, _PHYSICAL),
    ("optical_goods", 3.0, 0.08, _PHYSICAL),
    ("furniture_stores", 6.0, 0.15, _PHYSICAL),
    ("florists", 0.8, 0.09, _PHYSICAL),
    ("veterinary_services", 2.5, 0.08, _PHYSICAL),
    ("laundry_dry_cleaning", 0.4, 0.07, _PHYSICAL),
    ("travel_agencies", 8.0, 0.30, _HYBRID),
    ("post_office_courier", 0.5, 0.07, _PHYSICAL),
    ("news_dealers", 0.15, 0.05, _PHYSICAL),
    ("amusement_parks", 1.5, 0.10, _PHYSICAL),
    ("education_tuition", 4.0, 0.05, _HYBRID),
    ("charities_donations", 1.0, 0.14, _HYBRID),
    ("hospitals", 5.0, 0.06, _PHYSICAL),
    ("jewelry_stores", 8.0, 0.40, _PHYSICAL),
    ("gambling_betting", 2.0, 0.60, _HYBRID),
    ("money_transfer", 4.0, 0.50, _HYBRID),
    ("crypto_exchanges", 5.0, 0.65, _ONLINE_ONLY),
)
_CATEGORY_NAMES = np.array([c[0] for c in MERCHANT_CATEGORIES])
_CATEGORY_LOG_SCALE = np.log([c[1] for c in MERCHANT_CATEGORIES])
_CATEGORY_RISK_LOGIT = np.log([c[2] / (1.0 - c[2]) for c in MERCHANT_CATEGORIES])
_CATEGORY_KIND = np.array([c[3] for c in MERCHANT_CATEGORIES])
_CATEGORY_WEIGHTS = 1.0 / np.arange(1, len(MERCHANT_CATEGORIES) + 1) ** 1.05
_CATEGORY_WEIGHTS /= _CATEGORY_WEIGHTS.sum()
_ONLINE_ONLY_CATEGORIES = np.flatnonzero(_CATEGORY_KIND == _ONLINE_ONLY)
_CASH_CATEGORY = int(np.flatnonzero(_CATEGORY_KIND == _CASH)[0])
_CARD_TESTING_CATEGORIES = np.array(
    [
        int(np.flatnonzero(name == _CATEGORY_NAMES)[0])
        for name in ("digital_goods_games", "app_stores", "online_marketplaces")
    ]
)

# Countries with centroid (latitude, longitude) in degrees. The first twelve are cardholders' home
# countries (skewed shares); the last three are e-commerce hubs seen only on remote payments.
COUNTRIES: tuple[tuple[str, float, float], ...] = (
    ("US", 39.8, -98.6),
    ("GB", 54.0, -2.0),
    ("DE", 51.2, 10.4),
    ("FR", 46.6, 2.2),
    ("ES", 40.4, -3.7),
    ("IT", 42.8, 12.6),
    ("NL", 52.1, 5.3),
    ("CA", 56.1, -106.3),
    ("PL", 52.0, 19.1),
    ("SE", 62.0, 15.0),
    ("BR", -14.2, -51.9),
    ("MX", 23.6, -102.5),
    ("IE", 53.4, -8.2),
    ("LU", 49.8, 6.1),
    ("SG", 1.35, 103.8),
)
_COUNTRY_CODES = np.array([c[0] for c in COUNTRIES])
_N_HOME_COUNTRIES = 12
_HUB_COUNTRIES = np.arange(_N_HOME_COUNTRIES, len(COUNTRIES))
_HOME_COUNTRY_SHARES = np.array(
    [0.40, 0.14, 0.11, 0.08, 0.06, 0.05, 0.04, 0.04, 0.03, 0.02, 0.02, 0.01]
)
_TRAVEL_POPULARITY = np.array(
    [0.12, 0.10, 0.08, 0.18, 0.20, 0.15, 0.05, 0.03, 0.02, 0.01, 0.01, 0.05]
)
# Row h: where a cardholder from home country h travels (never h itself).
_TRAVEL_DESTINATION_P = np.tile(_TRAVEL_POPULARITY, (_N_HOME_COUNTRIES, 1))
np.fill_diagonal(_TRAVEL_DESTINATION_P, 0.0)
_TRAVEL_DESTINATION_P /= _TRAVEL_DESTINATION_P.sum(axis=1, keepdims=True)
# Remote payments: 70% domestic, 20% hubs (IE, LU, SG), 10% other foreign merchants.
_REMOTE_COUNTRY_P = np.zeros((_N_HOME_COUNTRIES, len(COUNTRIES)))
_REMOTE_COUNTRY_P[:, :_N_HOME_COUNTRIES] = 0.10 * _TRAVEL_DESTINATION_P
_REMOTE_COUNTRY_P[np.arange(_N_HOME_COUNTRIES), np.arange(_N_HOME_COUNTRIES)] = 0.70
_REMOTE_COUNTRY_P[:, _HUB_COUNTRIES] = [0.10, 0.06, 0.04]

EARTH_RADIUS_KM = 6371.0
# Half the Earth's circumference: no two points on Earth are further apart.
MAX_EARTH_DISTANCE_KM = np.pi * EARTH_RADIUS_KM


def _country_distance_matrix_km() -> np.ndarray:
    """Great-circle distances between country centroids, shape (n_countries, n_countries), km."""
    lat = np.radians([c[1] for c in COUNTRIES])
    lon = np.radians([c[2] for c in COUNTRIES])
    dlat = lat[:, None] - lat[None, :]
    dlon = lon[:, None] - lon[None, :]
    a = np.sin(dlat / 2) ** 2 + np.cos(lat[:, None]) * np.cos(lat[None, :]) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a))


_COUNTRY_DISTANCE_KM = _country_distance_matrix_km()

# Relative transaction intensity per UTC hour: quiet nights, lunch and evening peaks.
_HOURLY_INTENSITY = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 3.5, 4.0, 4.3, 4.8]
    + [5.5, 5.2, 4.6, 4.4, 4.7, 5.3, 5.6, 5.0, 4.0, 3.0, 2.2, 1.5]
)
_HOURLY_INTENSITY = _HOURLY_INTENSITY / _HOURLY_INTENSITY.sum()

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


@dataclass(frozen=True)
class _Customers:
    """Latent and observable attributes of the customer pool; every array has shape (n,)."""

    age: np.ndarray  # years, int64
    account_age_days: np.ndarray  # int64
    credit_limit: np.ndarray  # currency units, multiples of 100
    log_typical_amount: np.ndarray  # log of the customer's typical ticket
    base_utilisation: np.ndarray  # share of the credit limit in use, [0, 1)
    home_country: np.ndarray  # index into COUNTRIES (home countries only)
    transaction_weight: np.ndarray  # relative share of all transactions, sums to 1
    daily_rate: np.ndarray  # expected transactions per day
    travel_share: np.ndarray  # probability that an in-person payment happens abroad


def _correlated_normal(rng: np.random.Generator, base: np.ndarray, rho: float) -> np.ndarray:
    """Standard-normal draws with correlation `rho` to the standard-normal array `base`."""
    return rho * base + np.sqrt(1.0 - rho**2) * rng.standard_normal(base.shape[0])


def _make_customers(rng: np.random.Generator, n: int) -> _Customers:
    age = np.clip(18 + rng.gamma(2.2, 10.0, n), 18, 92).astype(np.int64)
    age_z = np.clip((age - 40.0) / 15.0, -3.0, 3.0)
    wealth = _correlated_normal(rng, age_z, 0.35)
    activity = _correlated_normal(rng, age_z, -0.35)
    tenure_years = (age - 18) * rng.beta(1.6, 2.6, n)
    account_age_days = np.maximum(7, np.round(tenure_years * 365.25)).astype(np.int64)
    log_limit = (
        np.log(2500.0)
        + 0.55 * wealth
        + 0.35 * np.log1p(tenure_years)
        + 0.3 * rng.standard_normal(n)
    )
    credit_limit = np.clip(np.round(np.exp(log_limit) / 100.0) * 100.0, 300.0, 50_000.0)
    log_typical_amount = np.log(28.0) + 0.45 * wealth + 0.35 * rng.standard_normal(n)
    base_utilisation = np.clip(rng.beta(2.0, 3.0, n) - 0.08 * wealth, 0.0, 0.95)
    home_country = rng.choice(_N_HOME_COUNTRIES, size=n, p=_HOME_COUNTRY_SHARES)
    transaction_weight = np.exp(0.7 * activity)
    transaction_weight /= transaction_weight.sum()
    daily_rate = np.exp(np.log(2.5) + 0.6 * activity)
    travel_share = np.clip(0.04 * np.exp(0.4 * wealth), 0.0, 0.3)
    return _Customers(
        age=age,
        account_age_days=account_age_days,
        credit_limit=credit_limit,
        log_typical_amount=log_typical_amount,
        base_utilisation=base_utilisation,
        home_country=home_country,
        transaction_weight=transaction_weight,
        daily_rate=daily_rate,
        travel_share=travel_share,
    )


def _sample_rows(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One category index per row of `probabilities` (shape (n, k), rows sum to 1)."""
    cumulative = np.cumsum(probabilities, axis=1)
    u = rng.random(probabilities.shape[0]) * cumulative[:, -1]
    return np.minimum((u[:, None] >= cumulative).sum(axis=1), probabilities.shape[1] - 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _draw_channels(
    rng: np.random.Generator, category: np.ndarray, age: np.ndarray, online_shift: float
) -> np.ndarray:
    """Channel index per row, shape (n,): allowed channels depend on the category's kind."""
    n = category.shape[0]
    age_z = (age - 40.0) / 15.0
    logits = np.full((n, len(CHANNELS)), -np.inf)
    kind = _CATEGORY_KIND[category]
    in_person = (kind == _PHYSICAL) | (kind == _HYBRID)
    # Younger customers tap cards and phones, older ones insert the card.
    logits[in_person, _POS] = 0.45 * age_z[in_person]
    logits[in_person, _CONTACTLESS] = 0.1
    logits[in_person, _MOBILE_WALLET] = -1.0 - 0.5 * age_z[in_person]
    logits[in_person, _ONLINE] = np.where(kind[in_person] == _HYBRID, 1.8, -1.6) + online_shift
    online_only = kind == _ONLINE_ONLY
    logits[online_only, _ONLINE] = np.log(0.8) + online_shift
    logits[online_only, _MOBILE_WALLET] = np.log(0.2)
    logits[kind == _CASH, _ATM] = 0.0
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return _sample_rows(rng, weights / weights.sum(axis=1, keepdims=True))


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


def _anomaly_counts(rows: int) -> dict[str, int]:
    return {kind: max(1, round(share * rows)) for kind, share in ANOMALY_SHARES.items()}


def _generate_day_table(
    customers: _Customers,
    rng: np.random.Generator,
    day: date,
    rows: int,
    drifted: bool,
) -> tuple[pa.Table, dict[str, int]]:
    """One day of transactions as an Arrow table with `SCHEMA`, and anomaly counts per kind."""
    n = rows

    # Event times: hour from the daily profile, uniform inside the hour; rows are exchangeable,
    # so sorting the times alone keeps the table ordered without permuting anything else.
    drawn_hour = rng.choice(24, size=n, p=_HOURLY_INTENSITY)
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

    category_weights = _CATEGORY_WEIGHTS.copy()
    if drifted:
        for name, boost in DRIFT_CATEGORY_BOOST.items():
            category_weights[name == _CATEGORY_NAMES] *= boost
        category_weights /= category_weights.sum()
    category = rng.choice(len(MERCHANT_CATEGORIES), size=n, p=category_weights)
    online_shift = DRIFT_ONLINE_LOGIT_SHIFT if drifted else 0.0
    channel = _draw_channels(rng, category, age.astype(np.float64), online_shift)
    remote = (channel == _ONLINE) | (
        (channel == _MOBILE_WALLET) & (_CATEGORY_KIND[category] == _ONLINE_ONLY)
    )

    # Merchant country: remote payments follow the e-commerce mix, in-person ones are domestic
    # unless the customer is travelling.
    travelling = ~remote & (rng.random(n) < customers.travel_share[customer])
    country = home.copy()
    country[travelling] = _sample_rows(rng, _TRAVEL_DESTINATION_P[home[travelling]])
    country[remote] = _sample_rows(rng, _REMOTE_COUNTRY_P[home[remote]])
    foreign = country != home

    # Distance of the payment from the cardholder's home: device location for remote payments,
    # mostly local in person, country-to-country distance when abroad.
    distance = np.exp(np.log(6.0) + 1.0 * rng.standard_normal(n))
    domestic_trip = ~remote & ~foreign & (rng.random(n) < 0.03)
    distance[domestic_trip] = np.exp(np.log(300.0) + 0.8 * rng.standard_normal(domestic_trip.sum()))
    distance[remote] = np.exp(np.log(4.0) + 1.0 * rng.standard_normal(remote.sum()))
    abroad = ~remote & foreign
    distance[abroad] = _COUNTRY_DISTANCE_KM[home[abroad], country[abroad]] * np.exp(
        0.2 * rng.standard_normal(abroad.sum())
    )

    # Amounts: customer's typical ticket x category scale x noise; cash comes in multiples of 20.
    amount_factor = DRIFT_AMOUNT_FACTOR if drifted else 1.0
    log_typical = customers.log_typical_amount[customer]
    amount = (
        np.exp(log_typical + _CATEGORY_LOG_SCALE[category] + 0.55 * rng.standard_normal(n))
        * amount_factor
    )
    atm = channel == _ATM
    amount[atm] = np.maximum(20.0, np.round(amount[atm] / 20.0) * 20.0)
    amount = np.maximum(0.5, np.round(amount, 2))
    # The 7-day average is the customer's mean ticket over the usual category mix.
    mean_ticket_offset = np.log(
        np.sum(_CATEGORY_WEIGHTS * np.exp(_CATEGORY_LOG_SCALE + 0.55**2 / 2))
    )
    avg_factor = DRIFT_AVG_AMOUNT_FACTOR if drifted else 1.0
    amount_7d_avg = np.round(
        np.exp(log_typical + mean_ticket_offset + 0.2 * rng.standard_normal(n)) * avg_factor, 2
    )

    night = hour < 5
    risk_logit = (
        _CATEGORY_RISK_LOGIT[category]
        + 0.7 * remote
        + 0.8 * foreign
        + 0.4 * night
        + 0.45 * rng.standard_normal(n)
    )
    merchant_risk_score = np.round(_sigmoid(risk_logit), 4)

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
    label, counts, touched = _inject_anomalies(rng, numeric, categorical)

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
        "merchant_category": pa.array(_CATEGORY_NAMES.tolist(), type=pa.string()),
        "channel": pa.array(list(CHANNELS), type=pa.string()),
        "country": pa.array(_COUNTRY_CODES.tolist(), type=pa.string()),
    }
    for column, codes in categorical.items():
        indices = pa.array(codes.astype(np.int32), mask=masks.get(column))
        columns[column] = levels[column].take(indices)
    columns[LABEL_COLUMN] = pa.array(label, type=pa.int8())
    return pa.Table.from_pydict(columns, schema=SCHEMA), counts


def _inject_anomalies(
    rng: np.random.Generator,
    numeric: dict[str, np.ndarray],
    categorical: dict[str, np.ndarray],
) -> tuple[np.ndarray, dict[str, int], dict[str, np.ndarray]]:
    """Overwrite disjoint random rows in place with each anomaly kind.

    Returns the 0/1 label (shape (n,), int8), the row count per kind, and per column a boolean mask
    of the cells that were overwritten.
    """
    n = numeric["amount"].shape[0]
    counts = _anomaly_counts(n)
    chosen = rng.permutation(n)[: sum(counts.values())]
    label = np.zeros(n, dtype=np.int8)
    label[chosen] = 1
    touched: dict[str, np.ndarray] = {}

    def put(column: str, rows: np.ndarray, values: np.ndarray) -> None:
        target = numeric if column in numeric else categorical
        target[column][rows] = values
        touched.setdefault(column, np.zeros(n, dtype=bool))[rows] = True

    start = 0
    rows_of: dict[str, np.ndarray] = {}
    for kind, count in counts.items():
        rows_of[kind] = np.sort(chosen[start : start + count])
        start += count

    # out_of_range: each row gets one impossible value, in one of five columns.
    rows = rows_of["out_of_range"]
    variant = rng.integers(0, 5, rows.shape[0])
    r = rows[variant == 0]
    put("amount", r, np.round(numeric["credit_limit"][r] * rng.uniform(1.5, 4.0, r.size), 2))
    r = rows[variant == 1]
    put("customer_age", r, rng.integers(101, 120, r.size))
    r = rows[variant == 2]
    put(
        "distance_from_home_km",
        r,
        np.round(rng.uniform(MAX_EARTH_DISTANCE_KM + 100, 2 * MAX_EARTH_DISTANCE_KM, r.size), 2),
    )
    r = rows[variant == 3]
    put("balance_ratio", r, np.round(rng.uniform(1.15, 2.0, r.size), 4))
    r = rows[variant == 4]
    put("seconds_since_last_tx", r, -rng.integers(60, 6 * 3600, r.size))

    # amount_vs_history: mostly far above the customer's average, sometimes far below.
    rows = rows_of["amount_vs_history"]
    direction = np.where(rng.random(rows.size) < 0.75, 1.0, -1.0)
    log_ratio = direction * rng.uniform(2.2, 3.2, rows.size)
    put(
        "amount",
        rows,
        np.maximum(0.5, np.round(numeric["amount_7d_avg"][rows] * np.exp(log_ratio), 2)),
    )

    # credit_vs_profile: a young customer on a weeks-old account with a top-tier limit.
    rows = rows_of["credit_vs_profile"]
    put("customer_age", rows, rng.integers(18, 23, rows.size))
    put("account_age_days", rows, rng.integers(5, 90, rows.size))
    put("credit_limit", rows, np.round(rng.uniform(25_000, 50_000, rows.size) / 500) * 500)

    # velocity_burst: card testing at digital merchants.
    rows = rows_of["velocity_burst"]
    put("tx_count_24h", rows, rng.integers(25, 70, rows.size))
    put("seconds_since_last_tx", rows, rng.integers(2, 45, rows.size))
    put("amount", rows, np.round(rng.uniform(0.5, 3.0, rows.size), 2))
    put("merchant_risk_score", rows, np.round(rng.uniform(0.55, 0.95, rows.size), 4))
    put(
        "distance_from_home_km",
        rows,
        np.round(np.exp(np.log(4.0) + rng.standard_normal(rows.size)), 2),
    )
    put("merchant_category", rows, rng.choice(_CARD_TESTING_CATEGORIES, rows.size))
    put("channel", rows, np.full(rows.size, _ONLINE))

    # rare_combination: pairs that never occur in normal traffic.
    rows = rows_of["rare_combination"]
    variant = rng.integers(0, 4, rows.size)
    r = rows[variant == 0]  # cash machine at an online-only merchant
    put("merchant_category", r, rng.choice(_ONLINE_ONLY_CATEGORIES, r.size))
    put("channel", r, np.full(r.size, _ATM))
    r = rows[variant == 1]  # card present at an online-only merchant
    put("merchant_category", r, rng.choice(_ONLINE_ONLY_CATEGORIES, r.size))
    put("channel", r, rng.choice([_POS, _CONTACTLESS], r.size))
    r = rows[variant == 2]  # cash withdrawal over the internet
    put("merchant_category", r, np.full(r.size, _CASH_CATEGORY))
    put("channel", r, np.full(r.size, _ONLINE))
    r = rows[variant == 3]  # in-person payment in an e-commerce hub country
    put("channel", r, rng.choice([_POS, _CONTACTLESS], r.size))
    put("country", r, rng.choice(_HUB_COUNTRIES, r.size))

    return label, counts, touched


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

    customers = _make_customers(np.random.default_rng([seed, 0]), CUSTOMER_POOL_SIZE)
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
