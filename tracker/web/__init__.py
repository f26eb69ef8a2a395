"""Operator web view and JSON API of the tracker."""
