"""The conversational layer: configuration, answer composition, the command line and the Telegram bot."""
