"""Matrix: a Synapse module that opens vouchers in the send path, and a test homeserver.

The event format, what the server enforces and what it cannot, and the
module's configuration are in ``docs/matrix.md``. Modules here import
Synapse or matrix-nio only where they need them (the ``matrix`` extra).
"""
