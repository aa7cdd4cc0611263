"""Fuzz the public API from its served OpenAPI spec (schemathesis): no 500s, documented answers."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from distillguard.gateway import FakeUpstream

from .support import Running


def test_public_api_fuzz(running: Running) -> None:
    running.gateway.router.add("*", FakeUpstream())  # any generated model name reaches the parsers
    schema = schemathesis.openapi.from_url(running.url + "/openapi.json").include(tag="api")
    ops = [op.ok() for op in schema.get_all_operations()]
    assert {o.path for o in ops} == {"/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/models",
                                        "/v1/responses", "/v1/responses/{response_id}", "/v1/responses/{response_id}/input_items",
                                        "/v1/embeddings"}
    seen: dict[str, list[int]] = {"positive": [], "negative": []}
    def run(op: object, mode: GenerationMode) -> None:
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        @given(op.as_strategy(generation_mode=mode))  # type: ignore[attr-defined]
        def check(case: schemathesis.Case) -> None:
            resp = case.call(base_url=running.url, headers={"authorization": f"Bearer {running.key}"}, timeout=10)
            seen[mode.value].append(resp.status_code)
            assert resp.status_code < 500, (case.path, case.body, resp.text)
            # Invalid optional fields (say `stream_options` of the wrong shape) may be ignored, as
            # the real APIs do; what must hold is no 5xx and answers in the documented shapes.
            excluded = [schemathesis.checks.negative_data_rejection] if mode is GenerationMode.NEGATIVE else []
            case.validate_response(resp, excluded_checks=excluded)

        check()

    for op in ops:
        run(op, GenerationMode.POSITIVE)
        if op.method.upper() == "POST":  # GET /v1/models has no input to make invalid
            run(op, GenerationMode.NEGATIVE)
    assert 200 in seen["positive"] and 400 in seen["negative"]
