"""The real-browser fixtures (``browser``, ``browser_context``) for the tests in this folder."""
from browser import browser, browser_context  # noqa: F401  (fixtures, found by name)
