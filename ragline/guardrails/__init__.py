"""Guardrails: what is redacted before a model call, flagged in passages, and checked in answers."""

from ragline.guardrails.guard import REFUSAL, Guard, OutputCheck, Redaction

__all__ = ["REFUSAL", "Guard", "OutputCheck", "Redaction"]
