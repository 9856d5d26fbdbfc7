# Once actorsys is installed, its pytest plugin is loaded by its entry point and this line
# is not needed; from a checkout, it loads the plugin (as `pytest -p actorsys.testing.plugin`).
pytest_plugins = ["actorsys.testing.plugin"]
