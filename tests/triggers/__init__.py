"""Tests of triggers: cron, the `on:` key, workflows, machine schedules, event context."""
