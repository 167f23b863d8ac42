"""Security schemes: credential verifiers (API keys, bearer JWTs, Basic, HMAC signatures) and their enforcement."""
