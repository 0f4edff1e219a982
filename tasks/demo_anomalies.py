"""The demo's injected anomalies: five kinds (see ``ANOMALY_KINDS``), about 2% of each day's rows,
each kind at least one row a day; ``is_injected_anomaly`` = 1 marks them (tasks/demo_data.py)."""

from __future__ import annotations

import numpy as np

from tasks.demo_world import (
    ATM,
    CARD_TESTING_CATEGORIES,
    CASH_CATEGORY,
    CONTACTLESS,
    HUB_COUNTRIES,
    MAX_EARTH_DISTANCE_KM,
    ONLINE,
    ONLINE_ONLY_CATEGORIES,
    POS,
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


def anomaly_counts(rows: int) -> dict[str, int]:
    """Rows of each kind in a day of ``rows`` rows (at least one of each)."""
    return {kind: max(1, round(share * rows)) for kind, share in ANOMALY_SHARES.items()}


def inject_anomalies(
    rng: np.random.Generator,
    numeric: dict[str, np.ndarray],
    categorical: dict[str, np.ndarray],
) -> tuple[np.ndarray, dict[str, int], dict[str, np.ndarray]]:
    """Overwrite disjoint random rows in place with each anomaly kind.

    Returns the 0/1 label (shape (n,), int8), the row count per kind, and per column a boolean mask
    of the cells that were overwritten.
    """
    n = numeric["amount"].shape[0]
    counts = anomaly_counts(n)
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
    put("merchant_category", rows, rng.choice(CARD_TESTING_CATEGORIES, rows.size))
    put("channel", rows, np.full(rows.size, ONLINE))

    # rare_combination: pairs that never occur in normal traffic.
    rows = rows_of["rare_combination"]
    variant = rng.integers(0, 4, rows.size)
    r = rows[variant == 0]  # cash machine at an online-only merchant
    put("merchant_category", r, rng.choice(ONLINE_ONLY_CATEGORIES, r.size))
    put("channel", r, np.full(r.size, ATM))
    r = rows[variant == 1]  # card present at an online-only merchant
    put("merchant_category", r, rng.choice(ONLINE_ONLY_CATEGORIES, r.size))
    put("channel", r, rng.choice([POS, CONTACTLESS], r.size))
    r = rows[variant == 2]  # cash withdrawal over the internet
    put("merchant_category", r, np.full(r.size, CASH_CATEGORY))
    put("channel", r, np.full(r.size, ONLINE))
    r = rows[variant == 3]  # in-person payment in an e-commerce hub country
    put("channel", r, rng.choice([POS, CONTACTLESS], r.size))
    put("country", r, rng.choice(HUB_COUNTRIES, r.size))

    return label, counts, touched
