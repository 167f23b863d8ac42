"""A spec operation compiled for serving: its handler, decoders, validators and declared responses.

``compile_operations`` walks the spec once at startup and collects every problem it finds (with
JSON pointers) before giving up, so one ``trio-router check`` shows them all. At request time an
``Operation`` only runs what was built here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..errors import HTTPError
from ..http.error_formats import error_format
from ..http.request import Request, cookie_pairs
from ..http.response import Response
from ..routing.template import TemplateError, param_names, parse_template
from ..security.policy import SecurityPolicy, build_verifier
from ..security.verifiers import Verifier
from ..streaming.guardrails.evaluator import GuardrailPolicy
from ..streaming.guardrails.policy import GuardrailConfig, operation_policy
from .access import ReadOnlyMode
from .binding import BindingError, Invoke, find_handler, plan_call
from .bodies import BodyDecoder, BodyError, MediaType, check_json_depth, decode_json, decoder_for, form_fields
from .document import SpecDocument, SpecError, SpecProblem, child
from .parameters import ABSENT, ParameterDecoder, ParameterError, compile_parameter, parse_query
from .responses import DeclaredResponse, ResponseChecker, is_json
from .schemas import SchemaCompiler, violations

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SecurityRequirement = tuple[tuple[str, tuple[str, ...]], ...]  # AND of (scheme, scopes)


class ValidationFailed(HTTPError):
    """The request breaks the operation's contract; ``errors`` lists each violation and where."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        count = f"{len(errors)} problems" if len(errors) > 1 else "1 problem"
        if len(errors) > MAX_LISTED_ERRORS:  # the answer stays small whatever the request holds
            count += f" (the first {MAX_LISTED_ERRORS} listed)"
            errors = errors[:MAX_LISTED_ERRORS]
        super().__init__(400, f"the request does not match the API: {count}", close=False, errors=errors)


MAX_LISTED_ERRORS = 20


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    operation_id: str
    pointer: str
    handler: Callable[..., Any]
    invoke: Invoke
    is_async: bool
    timeout: float | None
    path_params: tuple[ParameterDecoder, ...]
    query_params: tuple[ParameterDecoder, ...]
    header_params: tuple[ParameterDecoder, ...]
    cookie_params: tuple[ParameterDecoder, ...]
    body: BodyDecoder | None
    responses: ResponseChecker
    security: tuple[SecurityRequirement, ...]
    policy: SecurityPolicy | None  # None: no requirement at all
    stream_timeout: float | None  # x-stream-timeout: an event stream's deadline, from the request's start
    guardrails: object  # x-guardrails as written (None, a bool or a mapping), checked at startup
    websocket: bool  # x-websocket: the GET upgrades to a WebSocket session
    render_error: Callable[..., Response]  # x-error-format of the operation, else of the spec

    @property
    def handler_name(self) -> str:
        return f"{self.handler.__module__}:{self.handler.__qualname__}"

    def decode_parameters(self, request: Request, raw_path_params: dict[str, str]) -> None:
        """Decode, coerce and validate every declared parameter; 400 listing all violations."""
        errors: list[dict[str, str]] = []
        values: dict[str, Any] = {}
        if self.path_params:
            request.path_params = _decode_all(self.path_params, raw_path_params, values, errors)
        if self.query_params:
            try:
                pairs = parse_query(request.query_string)
            except ParameterError as exc:
                errors.append({"in": "query", "detail": f"the query string {exc}"})
                pairs = []
            request.query = _decode_all(self.query_params, pairs, values, errors)
        if self.header_params:
            _decode_all(self.header_params, request.headers, values, errors)
        if self.cookie_params:
            _decode_all(self.cookie_params, cookie_pairs(request.header("cookie")), values, errors)
        if errors:
            raise ValidationFailed(errors)
        request.params = values

    async def decode_body(self, request: Request) -> None:
        """Read, decode and validate the body: 415 for an undeclared media type, 400 otherwise."""
        assert self.body is not None
        raw = await request.receive()
        if not raw:
            if self.body.required:
                raise ValidationFailed([{"in": "body", "detail": "a request body is required"}])
            return
        content_type = request.header("content-type")
        limit = request.settings.max_form_fields
        if (fields := form_fields(content_type, raw)) > limit:
            raise HTTPError(413, f"the form has {fields} fields; at most {limit} are accepted", close=False)
        try:
            media, params = self.body.choose(content_type)
            if media.decode is decode_json:  # a limit of the server's, checked before parsing
                check_json_depth(raw, request.settings.max_json_depth)
            value, shadow = media.decode(raw, params)
        except BodyError as exc:
            if exc.status == 415:
                raise HTTPError(
                    415, str(exc), close=False, headers=[(b"accept", self.body.accepted.encode())]
                ) from None
            raise ValidationFailed([{"in": "body", "detail": str(exc)}]) from None
        if media.validator is not None:
            media.validator.strip_read_only(*((shadow,) if shadow is value else (shadow, value)))
            errors = [
                {"in": "body", "pointer": pointer, "detail": message}
                for pointer, message in violations(media.validator, shadow)
            ]
            if errors:
                raise ValidationFailed(errors)
        request.body = value


def _decode_all(
    decoders: tuple[ParameterDecoder, ...], source: Any, values: dict[str, Any], errors: list[dict[str, str]]
) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for decoder in decoders:
        where = decoder.location
        try:
            value = decoder.decode(source)
        except ParameterError as exc:
            errors.append({"in": where, "name": decoder.name, "detail": f"{decoder.name} {exc}"})
            continue
        if value is ABSENT:
            if decoder.required:
                errors.append({"in": where, "name": decoder.name, "detail": f"{decoder.name} is required"})
            elif decoder.default is not ABSENT:
                decoded[decoder.name] = values[decoder.python_name] = decoder.default
            continue
        plain = decoder.plain
        if decoder.validator is not None and (plain is None or not isinstance(value, plain)):
            found = [message for _, message in violations(decoder.validator, value)]
            if found:
                errors.extend({"in": where, "name": decoder.name, "detail": message} for message in found)
                continue
        decoded[decoder.name] = value
        values[decoder.python_name] = value
    return decoded


@dataclass
class _Compiler:
    document: SpecDocument
    module: ModuleType
    security_config: dict[str, dict[str, Any]]
    read_only: ReadOnlyMode
    schemas: SchemaCompiler = field(init=False)
    verifiers: dict[str, Verifier] = field(default_factory=dict)
    problems: list[SpecProblem] = field(default_factory=list)
    seen_ids: dict[str, str] = field(default_factory=dict)
    policies: dict[str, GuardrailPolicy | None] = field(default_factory=dict)  # x-guardrails checked so far
    guardrails_base: GuardrailConfig = field(default_factory=GuardrailConfig)

    def __post_init__(self) -> None:
        self.schemas = SchemaCompiler(self.document, self.read_only)

    def problem(self, uri_or_pointer: str, message: str) -> None:
        pointer = uri_or_pointer.partition("#")[2] if "#" in uri_or_pointer else uri_or_pointer
        self.problems.append(SpecProblem(pointer, message))

    def operations(self) -> list[Operation]:
        compiled: list[Operation] = []
        root_uri = self.document.uri + "#"
        for path, item in (self.document.root.get("paths") or {}).items():
            item_uri = child(root_uri, "paths", path)
            try:
                item, item_uri = self.document.resolve(item, item_uri)
                template_names = param_names(parse_template(path))
            except (SpecError, TemplateError) as exc:
                self._absorb(item_uri, exc)
                continue
            for method in METHODS:
                if method in item:
                    try:
                        compiled.append(self.operation(path, method, item, item_uri, template_names))
                    except (SpecError, BindingError, ValueError) as exc:
                        self._absorb(child(item_uri, method), exc)
        if self.problems:  # a shared schema's fault is found by each operation using it: once each
            raise SpecError(list(dict.fromkeys(self.problems)))
        return compiled

    def _absorb(self, uri: str, exc: Exception) -> None:
        if isinstance(exc, SpecError):
            self.problems.extend(exc.problems)
        else:
            self.problem(uri, str(exc))

    def operation(
        self, path: str, method: str, item: dict[str, Any], item_uri: str, template_names: list[str]
    ) -> Operation:
        spec = item[method]
        uri = child(item_uri, method)
        operation_id = spec.get("operationId") or ""
        if operation_id in self.seen_ids:
            raise ValueError(f"operationId {operation_id!r} is also used at {self.seen_ids[operation_id]}")
        if operation_id:
            self.seen_ids[operation_id] = uri.partition("#")[2]
        decoders = self.parameters(item, item_uri, spec, uri)
        declared_path = {decoder.name for decoder in decoders if decoder.location == "path"}
        for name in template_names:
            if name not in declared_path:
                raise ValueError(f"path parameter {name!r} of {path} is not declared in parameters")
        for name in declared_path - set(template_names):
            raise ValueError(f"path parameter {name!r} is declared but {path} has no {{{name}}}")
        body = self.request_body(spec, uri)
        security = self.security(spec)
        handler = find_handler(self.module, operation_id, spec.get("x-handler"))
        websocket = spec.get("x-websocket", False)
        if not isinstance(websocket, bool):
            raise ValueError(f"x-websocket must be true or false, not {websocket!r}")
        if websocket and method.upper() != "GET":
            raise ValueError("an x-websocket operation must be a GET (the WebSocket handshake)")
        names = {decoder.python_name for decoder in decoders}
        invoke, is_async = plan_call(handler, names, body is not None, websocket=websocket)
        if websocket and is_async:
            raise ValueError(f"x-websocket handler {handler.__name__} must be a plain def: it runs in a greenlet")
        timeout = _seconds(spec, "x-timeout")
        stream_timeout = _seconds(spec, "x-stream-timeout")
        fmt = spec.get("x-error-format", self.document.root.get("x-error-format"))
        render_error = error_format(fmt)
        guardrails = spec.get("x-guardrails")
        operation_policy(self.guardrails_base, guardrails, self.policies)  # a policy that cannot work stops startup
        return Operation(
            method=method.upper(),
            path=path,
            operation_id=operation_id or handler.__name__,
            pointer=uri.partition("#")[2],
            handler=handler,
            invoke=invoke,
            is_async=is_async,
            timeout=timeout,
            path_params=tuple(d for d in decoders if d.location == "path"),
            query_params=tuple(d for d in decoders if d.location == "query"),
            header_params=tuple(d for d in decoders if d.location == "header"),
            cookie_params=tuple(d for d in decoders if d.location == "cookie"),
            body=body,
            responses=self.responses(spec, uri),
            security=security,
            policy=self.policy(security),
            stream_timeout=stream_timeout,
            guardrails=guardrails,
            websocket=websocket,
            render_error=render_error,
        )

    def parameters(self, item: dict[str, Any], item_uri: str, spec: dict[str, Any], uri: str) -> list[ParameterDecoder]:
        merged: dict[tuple[str, str], ParameterDecoder] = {}
        for owner, owner_uri in ((item, item_uri), (spec, uri)):  # operation-level ones override
            for index, raw in enumerate(owner.get("parameters") or []):
                parameter, parameter_uri = self.document.resolve(raw, child(owner_uri, "parameters", index))
                if parameter.get("in") == "header" and parameter["name"].lower() in _IGNORED_HEADERS:
                    continue  # the spec says Accept, Content-Type and Authorization parameters are ignored
                merged[
                    parameter["in"], parameter["name"].lower() if parameter["in"] == "header" else parameter["name"]
                ] = self.parameter(parameter, parameter_uri)
        return list(merged.values())

    def parameter(self, parameter: dict[str, Any], uri: str) -> ParameterDecoder:
        if "content" in parameter:
            media = next(iter(parameter["content"]))
            schema_uri = child(uri, "content", media, "schema")
            raw_schema = parameter["content"][media].get("schema")
        else:
            schema_uri, raw_schema = child(uri, "schema"), parameter.get("schema")
        validator = None if raw_schema is None else self.schemas.validator(raw_schema, schema_uri, "request")
        schema = validator.schema if validator is not None else {}
        try:
            decoder = compile_parameter(parameter, schema, validator)
        except ValueError as exc:
            raise SpecError([SpecProblem(uri.partition("#")[2], str(exc))]) from None
        return decoder

    def request_body(self, spec: dict[str, Any], uri: str) -> BodyDecoder | None:
        if "requestBody" not in spec:
            return None
        body, body_uri = self.document.resolve(spec["requestBody"], child(uri, "requestBody"))
        media_types = []
        for name, media in (body.get("content") or {}).items():
            schema = media.get("schema")
            schema_uri = child(body_uri, "content", name, "schema")
            validator = None if schema is None else self.schemas.validator(schema, schema_uri, "request")
            decode = decoder_for(name, validator.schema if validator is not None else {}, media.get("encoding"))
            media_types.append(MediaType(name.split(";")[0].strip().lower(), decode, validator))
        return BodyDecoder(bool(body.get("required", False)), tuple(media_types))

    def responses(self, spec: dict[str, Any], uri: str) -> ResponseChecker:
        declared: dict[str, DeclaredResponse] = {}
        for status, raw in (spec.get("responses") or {}).items():
            status = str(status).upper()
            response, response_uri = self.document.resolve(raw, child(uri, "responses", status))
            media_types = {}
            for name, media in (response.get("content") or {}).items():
                schema = media.get("schema")
                schema_uri = child(response_uri, "content", name, "schema")
                validator = None if schema is None else self.schemas.validator(schema, schema_uri, "response")
                media_types[name.split(";")[0].strip().lower()] = validator
            required = []
            for header_name, raw_header in (response.get("headers") or {}).items():
                header, _ = self.document.resolve(raw_header, child(response_uri, "headers", header_name))
                if header.get("required") and header_name.lower() != "content-type":
                    required.append(header_name.lower())
            json_type = next((name for name in media_types if is_json(name)), None)
            declared[status] = DeclaredResponse(
                status, media_types, tuple(required), json_type.encode() if json_type else None
            )
        successes = sorted(int(status) for status in declared if status.isdigit() and status.startswith("2"))
        own_json_type = any(item.json_type not in (None, b"application/json") for item in declared.values())
        return ResponseChecker(declared, successes[0] if successes else 200, own_json_type)

    def security(self, spec: dict[str, Any]) -> tuple[SecurityRequirement, ...]:
        requirements = spec.get("security", self.document.root.get("security")) or []
        return tuple(
            tuple((scheme, tuple(scopes or ())) for scheme, scopes in requirement.items())
            for requirement in requirements
        )

    def policy(self, security: tuple[SecurityRequirement, ...]) -> SecurityPolicy | None:
        if not security:
            return None
        return SecurityPolicy.of(
            [[(self.verifier(scheme), frozenset(scopes)) for scheme, scopes in requirement] for requirement in security]
        )

    def verifier(self, name: str) -> Verifier:
        """The scheme's verifier, built once; a scheme without configuration stops startup."""
        found = self.verifiers.get(name)
        if found is None:
            schemes_uri = child(self.document.uri + "#", "components", "securitySchemes")
            raw = ((self.document.root.get("components") or {}).get("securitySchemes") or {}).get(name)
            if raw is None:
                raise ValueError(f"security scheme {name!r} is not declared in components/securitySchemes")
            scheme, _ = self.document.resolve(raw, child(schemes_uri, name))
            found = self.verifiers[name] = build_verifier(name, scheme, self.security_config.get(name))
        return found


def _seconds(spec: dict[str, Any], extension: str) -> float | None:
    value = spec.get(extension)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{extension} must be a positive number of seconds, not {value!r}")
    return float(value)


_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})


def compile_operations(
    document: SpecDocument,
    module: ModuleType,
    security: dict[str, dict[str, Any]] | None = None,
    read_only: ReadOnlyMode = "refuse",
) -> list[Operation]:
    """Every operation of ``document`` bound to ``module``, its security schemes verified as
    ``security`` configures them (scheme name -> settings), a request's readOnly properties
    refused or ignored as ``read_only`` says; SpecError lists all problems found."""
    return _Compiler(document, module, security or {}, read_only).operations()
