"""The apps built on the SIP user agent: one module per ``softphone`` subcommand."""
