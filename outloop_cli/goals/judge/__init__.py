"""The judge: a model, outside the agent, deciding whether a commit meets a written spec."""
