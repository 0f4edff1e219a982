"""Reports: the evaluation report of a training run, and the summaries of score runs.

- :mod:`~tasks.report.metrics`: metrics.json, its JSON Schema (the data file
  ``metrics.schema.json``) and how it is built from an evaluation;
- :mod:`~tasks.report.figures`: the plots, as PNG bytes;
- :mod:`~tasks.report.html_page`: report.html, from the Jinja2 template ``templates/report.html.j2``;
- :mod:`~tasks.report.markdown`: the Prefect artifacts (Markdown and table) of the evaluation;
- :mod:`~tasks.report.headline`: the formatting and headline numbers the page and artifact share;
- :mod:`~tasks.report.evaluation`: rendering, writing and publishing the report (its Prefect task);
- :mod:`~tasks.report.run_summary`: a score run's totals, artifact, one-line result and event.
"""

from tasks.report.evaluation import create_report, report_task, write_report
from tasks.report.metrics import (
    METRICS_FILE,
    METRICS_SCHEMA,
    REPORT_FILE,
    SCHEMA_VERSION,
    build_metrics,
    schema_json,
    validate_metrics,
)

__all__ = [
    "METRICS_FILE",
    "METRICS_SCHEMA",
    "REPORT_FILE",
    "SCHEMA_VERSION",
    "build_metrics",
    "create_report",
    "report_task",
    "schema_json",
    "validate_metrics",
    "write_report",
]
