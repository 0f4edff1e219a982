"""`aeflow models list|show|promote|rollback`: the registered model versions and the champion."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flows.commands import add_config_argument, config_and_storage


def _registry(config_path: str, writes: tuple[str, ...] = ()):
    return config_and_storage(config_path, writes)[1].registry()


def _number(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _events_about(state: dict[str, Any], version: str) -> list[dict[str, Any]]:
    """champion.json history events that name ``version`` (as the new or the previous champion)."""
    return [e for e in state["history"] if version in (e.get("version"), e.get("previous"))]


def cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(args.config)
    entries = registry.versions()
    champion = registry.champion()
    checks = {e["version"]: registry.verify(e["version"]) for e in entries}
    if args.json:
        for entry in entries:
            entry["bundle_check"] = checks[entry["version"]]
        print(json.dumps({"champion": champion, "versions": entries}, indent=2, sort_keys=True))
        return 0
    if not entries:
        print(f"no model versions in {registry.models_root}; run `aeflow train --config FILE`")
        return 0
    width = max(len(e["version"]) for e in entries)
    print(
        f"  {'version':<{width}}  {'registered':<25}  {'train rows':>10}  {'holdout MSE':>11}  "
        f"{'AUROC':>6}  {'bundle':<8}  gate"
    )
    for entry in entries:
        evaluation = entry.get("evaluation") or {}
        gate = entry.get("gate") or {}
        decision = gate.get("decision", "-")
        if gate and not gate.get("applied", True):
            decision += " (not applied)"
        marker = "*" if entry["version"] == champion else " "
        print(
            f"{marker} {entry['version']:<{width}}  {entry.get('registered_at', '-'):<25}  "
            f"{(entry.get('metrics') or {}).get('train_rows', '-'):>10}  "
            f"{_number(evaluation.get('reconstruction_mse')):>11}  "
            f"{_number(evaluation.get('auroc'), 3):>6}  "
            f"{'ok' if checks[entry['version']]['ok'] else 'MODIFIED':<8}  {decision}"
        )
    bad = [c for c in checks.values() if not c["ok"]]
    verdict = (
        f"{len(bad)} bundle(s) MODIFIED since registration"
        if bad
        else "every bundle matches its registry sha256"
    )
    print(
        f"{len(entries)} version(s) in {registry.models_root}; * = champion "
        f"({champion or 'none'}); {verdict}"
    )
    for check in bad:
        print(f"aeflow: bundle check failed: {check['problem']}", file=sys.stderr)
    return 1 if bad else 0


def cmd_show(args: argparse.Namespace) -> int:
    registry = _registry(args.config)
    version = registry.resolve(args.version)
    entry = registry.entry(version)
    state = registry.champion_state()
    events = _events_about(state, version)
    check = registry.verify(version)
    if args.json:
        document = {
            **entry,
            "is_champion": state["version"] == version,
            "events": events,
            "bundle_check": check,
        }
        print(json.dumps(document, indent=2, sort_keys=True))
        return 0 if check["ok"] else 1
    metrics = entry.get("metrics") or {}
    batches = entry.get("training_batches") or []
    lines = [
        f"version           {version}{'  (champion)' if state['version'] == version else ''}",
        f"registered at     {entry.get('registered_at', '-')}",
        f"bundle sha256     {entry.get('bundle_sha256', '-')}",
        "bundle check      "
        + ("ok: every file matches the registry's sha256" if check["ok"] else "FAILED"),
        f"training batches  {len(batches)}"
        + (f" ({batches[0]} .. {batches[-1]})" if batches else ""),
        f"training rows     {metrics.get('train_rows', '-')} (fit in "
        f"{metrics.get('fit_seconds', '-')} s, threshold {_number(metrics.get('threshold'))})",
    ]
    if metrics.get("calibration"):
        from tasks.fit_checks import calibration_text

        lines.append(f"threshold from    {calibration_text(metrics['calibration'])}")
    evaluation = entry.get("evaluation")
    if evaluation:
        lines.append(
            f"holdout           {evaluation.get('holdout_rows', '-')} rows: reconstruction MSE "
            f"{_number(evaluation.get('reconstruction_mse'))}, flag rate "
            f"{_number(evaluation.get('flag_rate'))}, AUROC {_number(evaluation.get('auroc'))}, "
            f"AUPRC {_number(evaluation.get('auprc'))}, F1 {_number(evaluation.get('f1'))}"
        )
    gate = entry.get("gate")
    if gate:
        applied = "" if gate.get("applied", True) else " (not applied: trained with --no-promote)"
        lines.append(
            f"gate              {gate['decision']}{applied}; champion before "
            f"{gate.get('champion_before') or 'none'}, after {gate.get('champion_after') or 'none'}"
        )
        lines += [f"                  - {reason}" for reason in gate.get("reasons", [])]
    report = entry.get("report")
    if report:
        lines.append(f"report            {report.get('html')}")
    for event in events:
        lines.append(
            f"history           {event['at']} {event['action']} {event['version']} "
            f"(previous {event.get('previous') or 'none'}): {event.get('reason', '')}"
        )
    if not check["ok"]:
        lines.append(f"                  {check['problem']}")
    print("\n".join(lines))
    return 0 if check["ok"] else 1


def cmd_promote(args: argparse.Namespace) -> int:
    registry = _registry(args.config, writes=("models",))
    before = registry.champion()
    state = registry.promote(args.version, f"manual promote (gate bypassed): {args.reason}")
    registry.update_entry(
        args.version,
        manual_promotion={"at": state["history"][-1]["at"], "reason": args.reason},
    )
    print(f"champion: {before or 'none'} -> {state['version']}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    registry = _registry(args.config, writes=("models",))
    before = registry.champion()
    state = registry.rollback(f"manual rollback: {args.reason}")
    print(f"champion: {before} -> {state['version']} (rolled back)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser(
        "models",
        help="list, inspect, promote and roll back registered model versions",
        description="Model versions live under <root>/models/<dataset>/<version>/; champion.json "
        "names the champion and keeps the history of promotions, refusals and rollbacks.",
    )
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        return add_config_argument(sub.add_parser(name, help=help_text, description=description))

    listing = add(
        "list",
        "every version, oldest first, with its holdout metrics and gate decision",
        "List the registered versions (* marks the champion) with training rows, holdout "
        "reconstruction MSE, AUROC (when labelled), the promotion gate's decision and whether the "
        "bundle still matches its registry sha256 (exit status 1 when one does not).",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=cmd_list)

    show = add(
        "show",
        "one version's registry entry, gate reasons, report and history",
        "Show a version's registry entry: training batches and rows, holdout metrics, the "
        "promotion gate's decision with its reasons, the report path, the champion history "
        "events that name it, and whether its bundle matches the registry's sha256 (exit "
        "status 1 when not).",
    )
    show.add_argument("version", nargs="?", default="champion", help="version (default: champion)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=cmd_show)

    promote = add(
        "promote",
        "make a version the champion (bypasses the promotion gate)",
        "Make VERSION the champion now, without the promotion gate (e.g. to override a refusal "
        "after reading its report). The reason is recorded in champion.json's history.",
    )
    promote.add_argument("version", help="the version to promote (see `aeflow models list`)")
    promote.add_argument("--reason", default="no reason given", help="why, for the history")
    promote.set_defaults(handler=cmd_promote)

    rollback = add(
        "rollback",
        "make the previous champion the champion again",
        "Switch the champion back to the one it replaced (champion.json is rewritten atomically; "
        "the rollback is recorded in its history).",
    )
    rollback.add_argument("--reason", default="no reason given", help="why, for the history")
    rollback.set_defaults(handler=cmd_rollback)
