"""softphone: a SIP softphone and PBX edge with a built-in policy guard."""

__version__ = "0.1.0"
