"""Loop configuration: read, validate, describe."""
