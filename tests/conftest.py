pytest_plugins = ["pvcore.testing"]
