"""Training speechqa's meaning model from the bundled weights (torch: the `[train]` extra).

Question time never imports this package.
"""
