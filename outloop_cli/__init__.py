"""outloop: a git-native, CI-style loop runner for coding agents."""

__version__ = "0.1.0"
