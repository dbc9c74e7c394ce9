"""Helpers shared by the test modules (imported as ``tests.helpers.<name>``)."""
