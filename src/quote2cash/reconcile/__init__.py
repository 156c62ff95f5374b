"""Three-way reconciliation: CRM, billing and ERP read directly, matched through the
cross-references, every drift reported with its kind, ids and a proposed repair."""

from quote2cash.reconcile.model import Drift, DriftKind, Repair, Report

__all__ = ["Drift", "DriftKind", "Repair", "Report"]
