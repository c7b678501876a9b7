"""Goal verifiers: outside checks that decide whether a loop is done."""
