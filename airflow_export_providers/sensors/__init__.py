"""Vendor modules; see the package README."""
