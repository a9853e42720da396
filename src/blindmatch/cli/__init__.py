"""The ``blindmatch`` command: thin commands over the library."""
