"""Test goal for the dashboard: TARGET tests, one passing per turn (counter.txt), as JUnit.

Writes reports/junit.xml with test_step_1..TARGET, of which those above the counter fail,
prints a pytest-like tail, and exits 0 once the counter reaches TARGET.
"""

import sys
from pathlib import Path

target = int(sys.argv[1])
counter = Path("counter.txt")
value = int(counter.read_text()) if counter.exists() else 0
cases = []
for step in range(1, target + 1):
    if step <= value:
        cases.append(f'<testcase classname="test_steps" name="test_step_{step}" time="0.01"/>')
    else:
        cases.append(
            f'<testcase classname="test_steps" name="test_step_{step}" time="0.01">'
            f'<failure message="step {step} not done">counter is {value}</failure></testcase>'
        )
        print(f"FAILED test_steps.py::test_step_{step} - counter is {value}")
failing = max(0, target - value)
Path("reports").mkdir(exist_ok=True)
Path("reports/junit.xml").write_text(
    '<?xml version="1.0" encoding="utf-8"?>\n'
    f'<testsuites><testsuite name="steps" tests="{target}" failures="{failing}" errors="0">'
    + "".join(cases)
    + "</testsuite></testsuites>\n"
)
print(f"counter is {value}")
print(f"{failing} failed, {target - failing} passed")
sys.exit(0 if failing == 0 else 1)
