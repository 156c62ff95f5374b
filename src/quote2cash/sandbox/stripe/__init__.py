"""A stateful local stand-in for the Stripe API subset quote2cash uses (official SDK drives it)."""

from .app import EmulatorConfig, RunningEmulator, StripeEmulator
from .webhooks import sign

__all__ = ["EmulatorConfig", "RunningEmulator", "StripeEmulator", "sign"]
