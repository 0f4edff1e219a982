"""The names of the columns aeflow adds to every scored row, for checks that must not import the
scoring code (a config is read before torch or scikit-learn are).

``tasks.scored_output`` defines the scored file's schema; tests/unit/test_config.py checks that
these names are its names.
"""

from __future__ import annotations

import re

# The model's outputs and the batch's constants, in the scored file and the API's responses.
OUTPUT_COLUMNS = (
    "anomaly_score",
    "anomaly_percentile",
    "is_anomaly",
    "threshold",
    "top_features",
    "model_version",
    "batch_id",
    "scored_at",
)
# The Hive partition key of scored/<dataset>/date=YYYY-MM-DD/: readers add it as a column.
PARTITION_COLUMN = "date"
_LATENT = re.compile(r"z_\d+")


def reserved_output_name(name: str) -> bool:
    """True when a column called ``name`` would clash with one aeflow writes: an output column,
    a latent feature ``z_<i>`` or the ``date`` partition key."""
    return name in OUTPUT_COLUMNS or name == PARTITION_COLUMN or bool(_LATENT.fullmatch(name))
