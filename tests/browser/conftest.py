"""The real-browser fixtures (``browser``, ``browser_context``, ``module_browser``) for the
tests in this folder."""
from browser import browser, browser_context, module_browser  # noqa: F401  (fixtures, found by name)
