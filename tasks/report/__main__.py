"""``python -m tasks.report > docs/metrics.schema.json``: the metrics.json schema, for the docs."""

from tasks.report.metrics import schema_json

print(schema_json(), end="")
