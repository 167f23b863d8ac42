"""Streaming guardrails: a sans-IO evaluator (PII, blocked patterns, governance keywords) that
redacts, flags or severs text streams, and the adapters that apply it to event streams."""

from .evaluator import GuardrailPolicy, Limits, Step, StreamGuard, Verdict
from .policy import GuardrailConfig, compile_policy, operation_policy

__all__ = [
    "GuardrailConfig",
    "GuardrailPolicy",
    "Limits",
    "Step",
    "StreamGuard",
    "Verdict",
    "compile_policy",
    "operation_policy",
]
