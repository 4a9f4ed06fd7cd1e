"""The shape the code promises: one module changes a subscription's status."""

from __future__ import annotations

import re
from pathlib import Path

import service

PACKAGE = Path(service.__file__).parent
STATE_MACHINE = PACKAGE / "subscriptions.py"

# Assigning a status to a Subscription row, an INSERT or UPDATE that sets one, or a
# statement that writes the subscriptions table.
WRITES = re.compile(
    r"\.status\s*=\s*SubscriptionStatus"
    r"|status\s*=\s*SubscriptionStatus\."
    r"|[\"']status[\"']\s*:\s*SubscriptionStatus"
    r"|(?:insert|update)\w*\((?:[^()]*,\s*)?Subscription\s*\)"
)


def test_only_the_state_machine_changes_a_subscription_status() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != STATE_MACHINE and "migrations" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if WRITES.search(line)
    ]
    assert found == []
    assert WRITES.search(STATE_MACHINE.read_text()), "the pattern still finds the writes"
