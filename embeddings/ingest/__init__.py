"""Speeches in, passages out: read a file, clean it, find its structure, cut it into cited passages."""
