"""The goal of the crm-sync loop: leads.csv and the client's CRM hold the same leads.

    python .outloop/crm-sync/reconcile.py [--junit FILE]

Reads the CRM's own export (``$CRM_EXPORT``, written by the CRM and only
readable in the sandbox), never the agent's sync log: the verifier does not
ask the thing it verifies. Exits 0 when every lead of leads.csv is in the
CRM and the row counts agree, 1 otherwise, naming what is missing.

``--junit`` also writes one test case per lead (failed while the lead is not
in the CRM) and one for the row counts, so outloop's reports and dashboard
chart the missing leads going down, iteration by iteration.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def write_junit(path: Path, wanted: set[str], missing: list[str], counts_agree: bool) -> None:
    cases = [(f"lead {email} is in the CRM", email in missing) for email in sorted(wanted)]
    cases.append(("row counts agree", not counts_agree))
    failures = sum(1 for _, failed in cases if failed)
    suite = ET.Element(
        "testsuite", name="crm-reconcile", tests=str(len(cases)), failures=str(failures)
    )
    for name, failed in cases:
        case = ET.SubElement(suite, "testcase", classname="reconcile", name=name)
        if failed:
            ET.SubElement(case, "failure", message="not in the CRM yet")
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--junit", type=Path, help="also write a JUnit XML report here")
    args = parser.parse_args()
    with Path("leads.csv").open(newline="", encoding="utf-8") as f:
        wanted = {row["email"].lower() for row in csv.DictReader(f)}
    export = Path(os.environ["CRM_EXPORT"])
    data = json.loads(export.read_text(encoding="utf-8"))
    held = {str(lead["email"]).lower() for lead in data["leads"]}
    missing = sorted(wanted - held)
    extra = sorted(held - wanted)
    print(f"leads.csv: {len(wanted)} rows; CRM ({data['client']}): {len(held)} rows")
    for email in missing:
        print(f"missing in the CRM: {email}")
    for email in extra:
        print(f"in the CRM but not in leads.csv: {email}")
    counts_agree = not missing and not extra and len(wanted) == data["count"]
    if args.junit:
        write_junit(args.junit, wanted, missing, counts_agree)
    if not counts_agree:
        print("not reconciled")
        return 1
    print("reconciled: row counts agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
