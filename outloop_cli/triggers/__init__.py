"""Triggers: what starts a loop by itself (a schedule, an event), and the schedulers that do it."""
