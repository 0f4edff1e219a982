"""`aeflow api`: serve the champion (or a pinned version) over HTTP with FastAPI under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os

from flows.commands import add_config_argument

TOKEN_ENV = "AEFLOW_API_TOKEN"
# With --workers N, each uvicorn worker process builds its own service from the parsed arguments,
# which the parent hands over in this environment variable (JSON).
ARGUMENTS_ENV = "AEFLOW_API_ARGUMENTS"


def _usable_cpus() -> int:
    affinity = getattr(os, "sched_getaffinity", None)  # Linux: the CPUs this process may use
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_service(args: argparse.Namespace):
    """(app, holder) for the parsed arguments; the model is loaded, verified and warmed up before
    this returns, so a config, registry or bundle problem stops the command before it listens."""
    from flows.commands import config_and_storage
    from flows.preflight import check_config_columns
    from serving.app import ApiSettings, create_app
    from serving.model_holder import ModelHolder, model_builder
    from serving.rules import not_null_reasons
    from tasks.io import is_local
    from tasks.validation import load_suite

    cfg, layout = config_and_storage(args.config)
    check_config_columns(cfg, args.model_version)
    cols, opts = cfg.columns, cfg.storage.options
    suite_opts = None if is_local(cfg.suite_path) else opts
    suite = load_suite(cfg.suite_path, cfg.validation.severity, suite_opts)
    registry = layout.registry()
    build = model_builder(
        cols.numeric,
        cols.categorical,
        cols.passthrough,
        cols.missing_values,
        not_null_reasons(suite),
    )
    holder = ModelHolder(registry, build, pinned=args.model_version, poll_s=args.poll_s)
    holder.load()
    settings = ApiSettings(
        max_rows=args.max_rows,
        max_body_bytes=int(args.max_body_mb * 2**20),
        token=os.environ.get(TOKEN_ENV) or None,
        top_k=cfg.scoring.top_k,
        unseen=args.unseen_levels,
        compute_threads=args.compute_threads or max(1, _usable_cpus() // args.workers),
        torch_threads=args.torch_threads,
    )
    return create_app(holder, settings), holder, settings


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    for name, value, low in (
        ("--max-rows", args.max_rows, 1),
        ("--port", args.port, 0),
        ("--workers", args.workers, 1),
    ):
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
    if args.max_body_mb <= 0 or args.poll_s <= 0:
        raise ValueError("--max-body-mb and --poll-s must be positive")
    if not _is_loopback(args.host) and not os.environ.get(TOKEN_ENV) and not args.insecure_no_token:
        raise ValueError(
            f"--host {args.host} is reachable from other machines and {TOKEN_ENV} is not set: "
            f"set {TOKEN_ENV} to the bearer token clients must send, or pass --insecure-no-token "
            "(a private network you trust)"
        )
    log = _configure_log(args.log_level, with_pid=args.workers > 1)
    # Everything is checked, and the model loaded and verified, before anything listens: with
    # --workers each worker process loads its own copy afterwards.
    app, holder, settings = build_service(args)
    follows = f"pinned version {args.model_version}" if args.model_version else "the champion"
    workers = f" in {args.workers} worker processes" if args.workers > 1 else ""
    log.info(
        "serving model %s (%s) on http://%s:%d%s; docs at /docs; bearer token %s",
        holder.current.version,
        follows,
        args.host,
        args.port,
        workers,
        "required" if settings.token else f"not set ({TOKEN_ENV})",
    )
    if not _is_loopback(args.host) and not settings.token:
        log.warning(
            "listening on %s without a token (--insecure-no-token): anyone who can reach the "
            "port can score rows",
            args.host,
        )
    served: object = app
    if args.workers > 1:
        del app, holder  # the workers build their own
        arguments = {k: v for k, v in vars(args).items() if k != "handler"}
        os.environ[ARGUMENTS_ENV] = json.dumps(arguments)
        served = f"{__name__}:app_from_environment"
    uvicorn.run(
        served,
        factory=args.workers > 1,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,  # aeflow.api logs each request, without row values
        timeout_graceful_shutdown=30,
    )
    return 0


def _configure_log(level: str, with_pid: bool = False) -> logging.Logger:
    """The service's own logger only: the libraries' loggers keep their levels. With several
    worker processes each line names its process: ``aeflow.api[pid]``."""
    log = logging.getLogger("aeflow.api")
    if not log.handlers:
        name = "%(name)s[%(process)d]" if with_pid else "%(name)s"
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {name}: %(message)s"))
        log.addHandler(handler)
    log.setLevel(getattr(logging, level.upper()))
    log.propagate = False
    return log


def app_from_environment():
    """The application of one ``--workers`` process (uvicorn's factory): the service built from
    the arguments the parent ``aeflow api`` left in ``AEFLOW_API_ARGUMENTS``."""
    args = argparse.Namespace(**json.loads(os.environ[ARGUMENTS_ENV]))
    log = _configure_log(args.log_level, with_pid=True)
    app, holder, _settings = build_service(args)
    log.info("worker process ready: model %s loaded", holder.current.version)
    return app


def register(sub: argparse._SubParsersAction) -> None:
    api = sub.add_parser(
        "api",
        help="serve score/encode/explain/reconstruct/decode over HTTP (FastAPI + uvicorn)",
        description="Serve the config's dataset's champion model (or --model-version) over HTTP: "
        "POST /score, /encode, /explain, /reconstruct, /decode with JSON records, Arrow IPC or "
        "Parquet bodies; GET /health, /ready, /model and /docs. The same bundle and scoring code "
        "as `aeflow score`, so the numbers are the same. A promotion or rollback of the champion "
        "is picked up within --poll-s seconds and swapped in atomically. Set "
        f"{TOKEN_ENV} to require 'Authorization: Bearer <token>'. See docs/serving.md.",
    )
    add_config_argument(api)
    api.add_argument(
        "--host",
        default="127.0.0.1",
        help=f"address to bind (127.0.0.1); any other address needs {TOKEN_ENV} set",
    )
    api.add_argument("--port", type=int, default=8000, help="port (8000)")
    api.add_argument(
        "--model-version", help="serve this registered version for good instead of the champion"
    )
    api.add_argument(
        "--max-rows", type=int, default=100_000, help="rows per request; more is a 413 (100000)"
    )
    api.add_argument(
        "--max-body-mb", type=float, default=64.0, help="MiB per request body; more is a 413 (64)"
    )
    api.add_argument(
        "--unseen-levels",
        choices=("reject", "score"),
        default="reject",
        help="a categorical level not seen in training: 'reject' (422, the default) or 'score' "
        "it as batch scoring does; a request can ask with ?unseen=",
    )
    api.add_argument(
        "--poll-s",
        type=float,
        default=2.0,
        help="seconds between two reads of the champion alias (2)",
    )
    api.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port, each with its own copy of the model that "
        "follows the champion on its own; one per CPU for throughput (1)",
    )
    api.add_argument(
        "--compute-threads",
        type=int,
        help="requests computed at once per worker; others queue (default: the usable CPUs "
        "divided among the workers)",
    )
    api.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads per compute thread (1)"
    )
    api.add_argument(
        "--insecure-no-token",
        action="store_true",
        help=f"allow a non-loopback --host without {TOKEN_ENV} (a private network you trust)",
    )
    api.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="log level; info logs one line per request, without row values (info)",
    )
    api.set_defaults(handler=cmd_api)
