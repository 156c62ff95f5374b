"""Process APIs: one module per business process, registered on the hub's handler registry."""

from quote2cash.engine.registry import Registry

registry = Registry()
