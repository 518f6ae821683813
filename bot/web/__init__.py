"""`speechqa serve`: the JSON API and the web page, for colleagues who cannot reach Telegram.

Nothing here is imported until the command runs, so the CLI works without the `web` extra.
"""
