"""Bolt Card tracker: database, JSON API and the operator web view."""
