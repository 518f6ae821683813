"""The Telegram front-end: ask in Telegram, get answers with numbered citations (`speechqa bot`).

`app` builds and runs the python-telegram-bot application; `handlers` answers questions and
commands, `buttons` the buttons under answers and inline mode, `admin` /reindex and uploads;
`render` turns answers into Telegram HTML; `state` is what the bot keeps between updates and
`send` the one way it replies; `ledger`, over the shared update journal (`bot.journal`), lets a
killed bot answer every question after a restart, and at most one twice. Who may use the bot and
the token's redaction are shared with the other chat front-ends (`bot.access`).

The PyPI library is also called `telegram`: modules here import it absolutely (`import telegram`,
`from telegram.ext import …`) and each other as `bot.telegram.…`, never relatively by bare name.
"""
