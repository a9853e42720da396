"""Integrations of blindmatch's private matching with real messengers.

``matrix``: a Synapse module (server side) and a test/demo homeserver harness;
see ``docs/matrix.md``. Each integration needs its optional extra
(``pip install blindmatch[matrix]``); nothing in the core imports from here.
"""
