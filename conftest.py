"""Root pytest configuration: plugins shared by every test module."""

pytest_plugins = ["tests.lab_fixture"]
