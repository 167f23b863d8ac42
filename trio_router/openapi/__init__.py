"""OpenAPI: spec loading and $ref, schema validators, parameter and body decoding, operation compiling."""
