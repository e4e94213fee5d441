"""The vendor-agnostic export engine: job model, HTTP, redaction, trigger, operator, landing."""
