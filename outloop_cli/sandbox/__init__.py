"""Containment for everything that runs code the agent wrote."""
