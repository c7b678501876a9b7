"""The command line: one module per verb, each registering its commands; only this package prints."""
