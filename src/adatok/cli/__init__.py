"""The ``adatok`` command line."""
