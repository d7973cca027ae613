"""Shared contracts: the site config, the MQTT message schema and topics, the database schema.

Every component may import this package; it imports none of them (import-linter holds that).
"""
