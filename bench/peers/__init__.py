"""Relays that securechat is measured against."""
