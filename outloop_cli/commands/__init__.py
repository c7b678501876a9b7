"""One module per verb: plain functions that return values; only ``cli`` prints."""
