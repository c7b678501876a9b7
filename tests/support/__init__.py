"""Helpers shared by the test packages: run drivers, agents, credentials, config corpus."""
