"""The goal of the crm-sync loop: leads.csv and the client's CRM hold the same leads.

    python .outloop/crm-sync/reconcile.py

Reads the CRM's own export (``$CRM_EXPORT``, written by the CRM and only
readable in the sandbox), never the agent's sync log: the verifier does not
ask the thing it verifies. Exits 0 when every lead of leads.csv is in the
CRM and the row counts agree, 1 otherwise, naming what is missing.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path


def main() -> int:
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
    if missing or extra or len(wanted) != data["count"]:
        print("not reconciled")
        return 1
    print("reconciled: row counts agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
