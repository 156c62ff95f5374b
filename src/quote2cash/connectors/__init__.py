"""Connectors: one package per external system, behind role protocols."""
