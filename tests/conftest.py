"""Test-suite root. ``require`` (skip or fail when pcscd, PostgreSQL or Chromium is missing)
lives in ``components.py`` beside this file so helpers in every test folder can import it."""
