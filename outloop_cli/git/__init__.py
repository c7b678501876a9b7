"""The git seam: the only package that builds a git command line."""
