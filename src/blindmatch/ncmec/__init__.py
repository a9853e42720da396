"""NCMEC CyberTipline reports (issue 13, item 4): the report XML (``report``), the HTTP
client (``client``), the durable outbox (``outbox``) and a local conformance server for
tests (``conformance``). docs/ncmec.md describes the flow."""
