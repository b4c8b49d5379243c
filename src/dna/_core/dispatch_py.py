"""Batch dispatch (pure-Python twin). Work in progress by the runtime author."""
