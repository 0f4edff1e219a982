"""The demo's synthetic world: payment channels, merchant categories, countries, the hours of
the day and the customer pool whose latent factors (wealth, activity, age, tenure, home country)
drive the demo's transactions (tasks/demo_data.py). Pure data and numpy: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANNELS: tuple[str, ...] = ("pos", "contactless", "online", "mobile_wallet", "atm")
POS, CONTACTLESS, ONLINE, MOBILE_WALLET, ATM = range(len(CHANNELS))

# Kinds of merchant category decide which channels they are ever seen with.
PHYSICAL, HYBRID, ONLINE_ONLY, CASH = range(4)

# (name, amount scale relative to a customer's typical ticket, base merchant risk, kind),
# listed roughly by popularity; frequencies follow a Zipf law over this order.
MERCHANT_CATEGORIES: tuple[tuple[str, float, float, int], ...] = (
    ("grocery_stores_supermarkets", 0.9, 0.08, PHYSICAL),
    ("eating_places_restaurants", 1.0, 0.10, PHYSICAL),
    ("fast_food_restaurants", 0.35, 0.08, PHYSICAL),
    ("service_stations_fuel", 0.9, 0.12, PHYSICAL),
    ("online_marketplaces", 1.2, 0.22, ONLINE_ONLY),
    ("atm_cash_withdrawal", 2.0, 0.10, CASH),
    ("coffee_shops", 0.15, 0.06, PHYSICAL),
    ("drug_stores_pharmacies", 0.6, 0.07, PHYSICAL),
    ("convenience_stores", 0.3, 0.10, PHYSICAL),
    ("streaming_services", 0.3, 0.12, ONLINE_ONLY),
    ("department_stores", 1.5, 0.10, PHYSICAL),
    ("discount_stores", 0.9, 0.09, PHYSICAL),
    ("telecom_services", 1.3, 0.06, HYBRID),
    ("clothing_stores", 1.6, 0.12, PHYSICAL),
    ("commuter_transport", 0.2, 0.05, PHYSICAL),
    ("taxicabs_limousines", 0.6, 0.13, PHYSICAL),
    ("bars_taverns", 0.7, 0.16, PHYSICAL),
    ("utilities_electric_gas", 2.0, 0.04, HYBRID),
    ("app_stores", 0.2, 0.18, ONLINE_ONLY),
    ("home_supply_warehouse", 2.5, 0.10, PHYSICAL),
    ("bakeries", 0.25, 0.06, PHYSICAL),
    ("parking_lots_garages", 0.3, 0.07, PHYSICAL),
    ("electronics_stores", 4.0, 0.25, PHYSICAL),
    ("hardware_stores", 1.4, 0.09, PHYSICAL),
    ("software_subscriptions", 0.7, 0.16, ONLINE_ONLY),
    ("barber_beauty_shops", 0.7, 0.07, PHYSICAL),
    ("liquor_stores", 0.6, 0.18, PHYSICAL),
    ("hotels_motels", 4.0, 0.20, HYBRID),
    ("airlines", 9.0, 0.28, HYBRID),
    ("digital_goods_games", 0.4, 0.30, ONLINE_ONLY),
    ("insurance_premiums", 3.0, 0.05, HYBRID),
    ("shoe_stores", 1.7, 0.11, PHYSICAL),
    ("cosmetic_stores", 0.8, 0.10, PHYSICAL),
    ("sporting_goods", 1.8, 0.12, PHYSICAL),
    ("automotive_service_shops", 3.5, 0.14, PHYSICAL),
    ("doctors_physicians", 2.0, 0.05, PHYSICAL),
    ("movie_theaters", 0.4, 0.07, PHYSICAL),
    ("pet_shops", 0.9, 0.08, PHYSICAL),
    ("book_stores", 0.6, 0.07, PHYSICAL),
    ("car_washes", 0.4, 0.09, PHYSICAL),
    ("auto_parts_stores", 1.8, 0.12, PHYSICAL),
    ("dentists_orthodontists", 3.5, 0.05, PHYSICAL),
    ("tobacco_stores", 0.3, 0.20, PHYSICAL),
    ("cloud_hosting_services", 1.0, 0.17, ONLINE_ONLY),
    ("car_rental", 5.0, 0.22, HYBRID),
    ("toy_stores", 1.2, 0.09, PHYSICAL),
    ("optical_goods", 3.0, 0.08, PHYSICAL),
    ("furniture_stores", 6.0, 0.15, PHYSICAL),
    ("florists", 0.8, 0.09, PHYSICAL),
    ("veterinary_services", 2.5, 0.08, PHYSICAL),
    ("laundry_dry_cleaning", 0.4, 0.07, PHYSICAL),
    ("travel_agencies", 8.0, 0.30, HYBRID),
    ("post_office_courier", 0.5, 0.07, PHYSICAL),
    ("news_dealers", 0.15, 0.05, PHYSICAL),
    ("amusement_parks", 1.5, 0.10, PHYSICAL),
    ("education_tuition", 4.0, 0.05, HYBRID),
    ("charities_donations", 1.0, 0.14, HYBRID),
    ("hospitals", 5.0, 0.06, PHYSICAL),
    ("jewelry_stores", 8.0, 0.40, PHYSICAL),
    ("gambling_betting", 2.0, 0.60, HYBRID),
    ("money_transfer", 4.0, 0.50, HYBRID),
    ("crypto_exchanges", 5.0, 0.65, ONLINE_ONLY),
)
CATEGORY_NAMES = np.array([c[0] for c in MERCHANT_CATEGORIES])
CATEGORY_LOG_SCALE = np.log([c[1] for c in MERCHANT_CATEGORIES])
CATEGORY_RISK_LOGIT = np.log([c[2] / (1.0 - c[2]) for c in MERCHANT_CATEGORIES])
CATEGORY_KIND = np.array([c[3] for c in MERCHANT_CATEGORIES])
CATEGORY_WEIGHTS = 1.0 / np.arange(1, len(MERCHANT_CATEGORIES) + 1) ** 1.05
CATEGORY_WEIGHTS /= CATEGORY_WEIGHTS.sum()
ONLINE_ONLY_CATEGORIES = np.flatnonzero(CATEGORY_KIND == ONLINE_ONLY)
CASH_CATEGORY = int(np.flatnonzero(CATEGORY_KIND == CASH)[0])
CARD_TESTING_CATEGORIES = np.array(
    [
        int(np.flatnonzero(name == CATEGORY_NAMES)[0])
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
COUNTRY_CODES = np.array([c[0] for c in COUNTRIES])
N_HOME_COUNTRIES = 12
HUB_COUNTRIES = np.arange(N_HOME_COUNTRIES, len(COUNTRIES))
HOME_COUNTRY_SHARES = np.array(
    [0.40, 0.14, 0.11, 0.08, 0.06, 0.05, 0.04, 0.04, 0.03, 0.02, 0.02, 0.01]
)
TRAVEL_POPULARITY = np.array(
    [0.12, 0.10, 0.08, 0.18, 0.20, 0.15, 0.05, 0.03, 0.02, 0.01, 0.01, 0.05]
)
# Row h: where a cardholder from home country h travels (never h itself).
TRAVEL_DESTINATION_P = np.tile(TRAVEL_POPULARITY, (N_HOME_COUNTRIES, 1))
np.fill_diagonal(TRAVEL_DESTINATION_P, 0.0)
TRAVEL_DESTINATION_P /= TRAVEL_DESTINATION_P.sum(axis=1, keepdims=True)
# Remote payments: 70% domestic, 20% hubs (IE, LU, SG), 10% other foreign merchants.
REMOTE_COUNTRY_P = np.zeros((N_HOME_COUNTRIES, len(COUNTRIES)))
REMOTE_COUNTRY_P[:, :N_HOME_COUNTRIES] = 0.10 * TRAVEL_DESTINATION_P
REMOTE_COUNTRY_P[np.arange(N_HOME_COUNTRIES), np.arange(N_HOME_COUNTRIES)] = 0.70
REMOTE_COUNTRY_P[:, HUB_COUNTRIES] = [0.10, 0.06, 0.04]

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


COUNTRY_DISTANCE_KM = _country_distance_matrix_km()

# Relative transaction intensity per UTC hour: quiet nights, lunch and evening peaks.
HOURLY_INTENSITY = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 3.5, 4.0, 4.3, 4.8]
    + [5.5, 5.2, 4.6, 4.4, 4.7, 5.3, 5.6, 5.0, 4.0, 3.0, 2.2, 1.5]
)
HOURLY_INTENSITY = HOURLY_INTENSITY / HOURLY_INTENSITY.sum()


@dataclass(frozen=True)
class Customers:
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


def make_customers(rng: np.random.Generator, n: int) -> Customers:
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
    home_country = rng.choice(N_HOME_COUNTRIES, size=n, p=HOME_COUNTRY_SHARES)
    transaction_weight = np.exp(0.7 * activity)
    transaction_weight /= transaction_weight.sum()
    daily_rate = np.exp(np.log(2.5) + 0.6 * activity)
    travel_share = np.clip(0.04 * np.exp(0.4 * wealth), 0.0, 0.3)
    return Customers(
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


def sample_rows(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One category index per row of `probabilities` (shape (n, k), rows sum to 1)."""
    cumulative = np.cumsum(probabilities, axis=1)
    u = rng.random(probabilities.shape[0]) * cumulative[:, -1]
    return np.minimum((u[:, None] >= cumulative).sum(axis=1), probabilities.shape[1] - 1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def draw_channels(
    rng: np.random.Generator, category: np.ndarray, age: np.ndarray, online_shift: float
) -> np.ndarray:
    """Channel index per row, shape (n,): allowed channels depend on the category's kind."""
    n = category.shape[0]
    age_z = (age - 40.0) / 15.0
    logits = np.full((n, len(CHANNELS)), -np.inf)
    kind = CATEGORY_KIND[category]
    in_person = (kind == PHYSICAL) | (kind == HYBRID)
    # Younger customers tap cards and phones, older ones insert the card.
    logits[in_person, POS] = 0.45 * age_z[in_person]
    logits[in_person, CONTACTLESS] = 0.1
    logits[in_person, MOBILE_WALLET] = -1.0 - 0.5 * age_z[in_person]
    logits[in_person, ONLINE] = np.where(kind[in_person] == HYBRID, 1.8, -1.6) + online_shift
    online_only = kind == ONLINE_ONLY
    logits[online_only, ONLINE] = np.log(0.8) + online_shift
    logits[online_only, MOBILE_WALLET] = np.log(0.2)
    logits[kind == CASH, ATM] = 0.0
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return sample_rows(rng, weights / weights.sum(axis=1, keepdims=True))
