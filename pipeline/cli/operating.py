"""`omnistitch link|review|unlink|split|junk|remove|erase|explain`: an operator's decision
(or question) sent to the running worker, then its result (pipeline.stream.submission; the
decisions: pipeline.engine.operations)."""

from __future__ import annotations

import argparse
import getpass
import json
import uuid
from typing import Any

from pipeline.cli.console import say
from pipeline.clock import system_clock
from pipeline.engine.operations import Operation
from pipeline.settings import Settings
from pipeline.stream.transport import check_kafka

# Exit codes: the decision was applied (or had been); a rule refused it, a reference is
# unknown or its handling failed; no answer within the timeout (the operation stays on its
# topic).
APPLIED, NOT_APPLIED, NO_ANSWER = 0, 1, 3


def add_operation_arguments(
    parser: argparse.ArgumentParser, pair: bool = True, positional: bool = True
) -> None:
    """The references an operation names (``pair``: two of them) and its common options."""
    if positional:
        parser.add_argument("left", help="a customer id (cus-…) or an identifier NAMESPACE:VALUE")
    if pair:
        parser.add_argument("right", help="the other customer id or identifier")
    parser.add_argument(
        "--operator", default=None, help="who decides (default: the login name; not an e-mail)"
    )
    parser.add_argument("--reason", default="", help="why, in words, without personal data")
    parser.add_argument(
        "--id",
        dest="operation_id",
        help="the operation id (default: a new one); a retry with the same id is applied once",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the result (0: no wait)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _operation(args: argparse.Namespace, kind: str) -> Operation:
    if kind == "split":
        right = f"event:{args.event}" if args.event else f"source:{args.source}"
    else:
        right = getattr(args, "right", "")
    if kind == "erase":
        args.left = args.customer or args.identifier
    return Operation.from_json(
        {
            "operation_id": args.operation_id or f"op-{uuid.uuid4()}",
            "kind": kind,
            "left": args.left,
            "right": right,
            "operator": args.operator or getpass.getuser(),
            "reason": args.reason,
            "requested_at": system_clock(),
        }
    )


def _send(args: argparse.Namespace, settings: Settings, kind: str) -> int:
    from pipeline.stream.submission import submit

    operation = _operation(args, kind)
    check_kafka(settings.kafka_security())
    answer = submit(settings, operation, args.timeout)
    result = answer.result
    if args.json:
        shown: dict[str, Any] = {"operation_id": operation.operation_id, "kind": kind}
        shown |= {"status": "sent"} if result is None else result.model_dump(mode="json")
        print(json.dumps(shown, sort_keys=True))
    elif result is None:
        say(
            f"{kind} {operation.operation_id}: sent; "
            + ("no result within the timeout: " if args.timeout > 0 else "")
            + "a running worker applies it once"
        )
    else:
        say(
            f"{kind} {operation.operation_id}: {result.status} ({result.detail})"
            + (f", customer {result.customer_id}" if result.customer_id else "")
            + (f", changes {', '.join(result.change_ids)}" if result.change_ids else "")
        )
    if result is None:
        return NO_ANSWER if args.timeout > 0 else APPLIED
    return APPLIED if result.status in ("done", "repeat") else NOT_APPLIED


def cmd_link(args: argparse.Namespace, settings: Settings) -> int:
    return _send(args, settings, "link")


def cmd_review(args: argparse.Namespace, settings: Settings) -> int:
    return _send(args, settings, args.decision)


def cmd_unlink(args: argparse.Namespace, settings: Settings) -> int:
    return _send(args, settings, "unlink")


def cmd_split(args: argparse.Namespace, settings: Settings) -> int:
    return _send(args, settings, "split")


def cmd_junk(args: argparse.Namespace, settings: Settings) -> int:
    return _send(args, settings, "junk")


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    return _send(args, settings, "remove")


def cmd_erase(args: argparse.Namespace, settings: Settings) -> int:
    return _send(args, settings, "erase")


def explain_live(args: argparse.Namespace, settings: Settings) -> int:
    """``omnistitch explain L R`` against the running worker: an ``explain`` operation, read
    by the linking stage from its current graph, answered on the results topic (sealed there
    when a vault is configured: the path names identifiers). Exit 0 joined, 1 apart or
    refused, 3 no answer."""
    from pipeline.engine.explanation import Explanation
    from pipeline.stream.submission import submit

    args.operator, args.reason, args.operation_id = None, "", None
    operation = _operation(args, "explain")
    check_kafka(settings.kafka_security())
    result = submit(settings, operation, args.timeout).result
    if result is None:
        say(f"explain {operation.operation_id}: no answer within {args.timeout:.0f}s")
        return NO_ANSWER
    if result.status != "done":
        say(f"explain: {result.status} ({result.detail})")
        return NOT_APPLIED
    found = Explanation.from_json(json.loads(result.detail))
    print(json.dumps(found.to_json(), indent=2) if args.json else found.render())
    return APPLIED if found.joined else NOT_APPLIED
