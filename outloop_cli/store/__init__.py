"""What a run leaves on disk: run records, locks, the audit log, atomic writes."""
