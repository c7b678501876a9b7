"""Run the test suite as ``python -m unittest -v`` does, and also write JUnit XML.

``python -m tests.junit_report [PATH]`` discovers the tests the same way,
prints the same verbose report, exits 0 only when every test passed, and
writes the results to PATH (default ``test-results/junit.xml``) for CI and for
outloop, whose goal reads the counts and failing tests from it. Standard
library only, so it runs wherever Python does.
"""

import sys
import time
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

DEFAULT_PATH = Path("test-results") / "junit.xml"


class RecordingResult(unittest.TextTestResult):
    """unittest's verbose result, keeping each test's outcome and duration."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cases = []
        self._started = 0.0

    def startTest(self, test):
        self._started = time.perf_counter()
        super().startTest(test)

    def _record(self, test, outcome, detail=None):
        classname, _, name = test.id().rpartition(".")
        self.cases.append((classname, name, time.perf_counter() - self._started, outcome, detail))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failure", self._problem(test, err))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", self._problem(test, err))

    def _problem(self, test, err):
        kind, value, _ = err
        # the traceback as unittest prints it: without unittest's own frames
        return kind.__name__, str(value), self._exc_info_to_string(err, test)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._record(test, "passed")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record(test, "failure", ("UnexpectedSuccess", "unexpected success", ""))


def junit_xml(cases, duration):
    counts = {"failure": 0, "error": 0, "skipped": 0}
    suite = ET.Element("testsuite", name="tests", time=f"{duration:.3f}")
    for classname, name, seconds, outcome, detail in cases:
        case = ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")
        if outcome == "passed":
            continue
        counts[outcome] += 1
        if outcome == "skipped":
            ET.SubElement(case, "skipped", message=str(detail))
            continue
        kind, message, text = detail
        element = ET.SubElement(case, outcome, message=message, type=kind)
        element.text = text or None
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(counts["failure"]))
    suite.set("errors", str(counts["error"]))
    suite.set("skipped", str(counts["skipped"]))
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def main(argv):
    path = Path(argv[0]) if argv else DEFAULT_PATH
    tests = unittest.defaultTestLoader.discover(".")
    runner = unittest.TextTestRunner(verbosity=2, resultclass=RecordingResult)
    started = time.perf_counter()
    result = runner.run(tests)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(result.cases, time.perf_counter() - started), encoding="utf-8")
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
