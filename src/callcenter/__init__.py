"""Callcenter: an open-source CRM call center with a PBX bridge."""

__version__ = "0.1.0"
