"""Guardrails: what is redacted before a model call, flagged in passages, and checked in answers."""
