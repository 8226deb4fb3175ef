"""The README's consumer example and its unit test run as written (the README stays true)."""

import asyncio
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def blocks():
    text = README.read_text()
    section = text[text.index("## Consuming"):]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)[:2]


def test_the_readme_subscriber_is_at_most_12_lines_and_its_test_passes():
    subscriber, test = blocks()
    assert len(subscriber.strip().splitlines()) <= 12
    ns: dict = {}
    exec(compile(subscriber, "README:subscriber", "exec"), ns)
    exec(compile(test, "README:test", "exec"), ns)
    asyncio.run(asyncio.wait_for(ns["test_charge"](), 10))
