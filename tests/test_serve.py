"""The decision service in process (FastAPI's TestClient): every served component's operations
answer what its loaded predictor answers, and bad, oversized, unknown or unauthorised requests get
4xx with a message, never 5xx (a hypothesis fuzz of 1,000 bad bodies included)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import infragym
from infragym.envs.health.features import FEATURE_BOUNDS, INTEGER_FEATURES
from infragym.serve import ServedModel, create_app, load_models

from .conftest import vmr2l_snapshot_json

TOKEN = "serve-tests-" + "t" * 20
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY_BYTES = 1 << 20
SERVED = ("deoxys", "continuum", "cloudformer", "vm2rl", "serverless")


@pytest.fixture(scope="module")
def models(served_exports: dict[str, Path]) -> dict[str, ServedModel]:
    loaded = load_models([str(served_exports[name]) for name in SERVED])
    return {m.name: m for m in loaded}


@pytest.fixture(scope="module")
def client(models: dict[str, ServedModel]) -> Iterator[TestClient]:
    app = create_app(list(models.values()), token=TOKEN, max_body_bytes=MAX_BODY_BYTES, threads=2)
    with TestClient(app, headers=AUTH) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def anonymous(client: TestClient) -> TestClient:
    """The same application, without the bearer token."""
    return TestClient(client.app)


@pytest.fixture(scope="module")
def predictors(served_exports: dict[str, Path]) -> dict[str, Any]:
    """Each export loaded again, directly: what the service's answers are compared with."""
    return {name: infragym.load(served_exports[name]) for name in SERVED}


def _post(client: TestClient, model: str, operation: str, body: Any) -> Any:
    response = client.post(f"/v1/models/{model}/{operation}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _raw(client: TestClient, model: str, operation: str, content: bytes) -> Any:
    return client.post(f"/v1/models/{model}/{operation}", content=content, headers={"Content-Type": "application/json"})


# --------------------------------------------------------------------------- discovery
def test_health_and_readiness(anonymous: TestClient) -> None:
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "models": sorted(SERVED)}


def test_models_list_names_components_versions_and_metrics(client: TestClient, models: dict[str, ServedModel]) -> None:
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert set(listed) == set(SERVED)
    for name, entry in listed.items():
        manifest = models[name].manifest
        assert entry["component"] == name
        assert entry["version"] == manifest["libraries"]["infragym"]
        assert entry["metrics"] == manifest["metrics"] and entry["metrics"]
        assert entry["operations"] == sorted(models[name].operations)
    assert listed["vm2rl"]["operations"] == ["act"]
    assert listed["continuum"]["operations"] == ["predict", "ttl"]


def test_model_description_has_the_export_schema_and_request_models(
    client: TestClient, models: dict[str, ServedModel]
) -> None:
    for name in SERVED:
        described = client.get(f"/v1/models/{name}").json()
        assert described["input_schema"] == models[name].manifest["input_schema"]
        assert described["output_schema"] == models[name].manifest["output_schema"]
        assert set(described["requests"]) == set(described["responses"]) == set(models[name].operations)
    window = client.get("/v1/models/cloudformer").json()["input_schema"]
    assert window["window"] > 0 and window["n_metrics"] > 0


def test_openapi_lists_every_models_request_and_response(client: TestClient, models: dict[str, ServedModel]) -> None:
    assert "/openapi.json" in client.get("/docs").text  # the interactive page reads the spec below
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name, model in models.items():
        for operation in model.operations.values():
            route = spec["paths"][f"/v1/models/{name}/{operation.name}"]["post"]
            request_ref = route["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            response_ref = route["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            assert request_ref.rsplit("/", 1)[-1] == operation.request.__name__ in schemas
            assert response_ref.rsplit("/", 1)[-1] == operation.response.__name__ in schemas
            assert {"401", "413", "422"} <= set(route["responses"])


# --------------------------------------------------------------------------- answers
def _deoxys_events(model: ServedModel, n: int) -> list[dict[str, Any]]:
    """``n`` events cycling through every category, with varied finite numbers."""
    rng = np.random.default_rng(0)
    events = []
    for i in range(n):
        event: dict[str, Any] = {}
        for column, spec in model.manifest["input_schema"]["columns"].items():
            if spec.get("dtype") == "category":
                event[column] = spec["categories"][i % len(spec["categories"])]
            else:  # within the range the predictor checks (counts and flags whole)
                low, high = FEATURE_BOUNDS.get(column, (0.0, None))
                low, high = low or 0, high if high is not None else (low or 0) + 10
                value = rng.integers(low, high + 1) if column in INTEGER_FEATURES else rng.uniform(low, high)
                event[column] = float(np.round(value, 3))
        events.append(event)
    return events


def test_deoxys_predict_matches_the_loaded_predictor(client: TestClient, models, predictors) -> None:
    events = _deoxys_events(models["deoxys"], 7)
    decisions = _post(client, "deoxys", "predict", {"events": events})["decisions"]
    expected = predictors["deoxys"].predict(pd.DataFrame(events))
    assert len(decisions) == len(events)
    for served, (_, direct) in zip(decisions, expected.iterrows(), strict=True):
        for key, value in served.items():
            if isinstance(value, str | bool):
                assert value == (str(direct[key]) if isinstance(value, str) else bool(direct[key])), key
            else:
                assert value == pytest.approx(float(direct[key]), rel=1e-9, abs=1e-12), key
    # the fallback switch of the request is the predictor's
    no_fallback = _post(client, "deoxys", "predict", {"events": events[:2], "fallback": False})["decisions"]
    assert not any(d["fallback"] for d in no_fallback)


def test_continuum_predict_and_ttl_match_the_loaded_predictor(client: TestClient, predictors) -> None:
    calls = [
        {"tool": "bash", "arguments": "pytest -x /testbed/tests/test_api.py", "turn": 5, "prev_duration_s": 3.0},
        {"tool": "str_replace_editor", "arguments": "view /testbed/a.py"},
        {"tool": "an_unseen_tool", "arguments": "", "context_tokens": 9000},
    ]
    predicted = _post(client, "continuum", "predict", {"tool_calls": calls})["predictions"]
    expected = predictors["continuum"].predict(calls)
    assert len(predicted) == 3
    for served, (_, direct) in zip(predicted, expected.iterrows(), strict=True):
        assert served["mean"] == pytest.approx(direct["mean"])
        assert served["quantiles"] == pytest.approx({c: direct[c] for c in expected.columns if c != "mean"})
    other = next(n for n in predictors["continuum"].predictors if n != predictors["continuum"].best)
    by_name = _post(client, "continuum", "predict", {"tool_calls": calls, "predictor": other})["predictions"]
    assert [p["mean"] for p in by_name] == pytest.approx(
        predictors["continuum"].predict(calls, predictor=other)["mean"].tolist()
    )
    costs = [{**c, "reload_s": r, "queue_delay_s": 0.5} for c, r in zip(calls, (0.0, 5.0, 1e6), strict=True)]
    ttl = _post(client, "continuum", "ttl", {"tool_calls": costs})["ttl_s"]
    assert ttl == pytest.approx(
        predictors["continuum"].ttl(calls, reload_s=[0.0, 5.0, 1e6], queue_delay_s=[0.5] * 3).tolist()
    )


def test_cloudformer_predict_matches_the_loaded_predictor(client: TestClient, models, predictors) -> None:
    schema = models["cloudformer"].manifest["input_schema"]
    windows = np.random.default_rng(1).gamma(2.0, 5.0, size=(3, schema["window"], schema["n_metrics"]))
    p = _post(client, "cloudformer", "predict", {"windows": windows.tolist()})["p"]
    assert p == pytest.approx(predictors["cloudformer"].predict(windows.astype(np.float32)).tolist(), rel=1e-6)
    assert all(0.0 < v < 1.0 for v in p)


def test_vm2rl_act_answers_an_observation_and_a_snapshot(client: TestClient, models, predictors) -> None:
    from infragym.envs.cluster import VMRescheduleEnv
    from infragym.envs.cluster.snapshot import parse_vmr2l_snapshot

    env = VMRescheduleEnv(preset="small", max_migrations=3)
    obs, _ = env.reset(seed=0)
    mask = np.zeros((len(obs["vm"]), len(obs["pm"]) * 3), dtype=bool)
    for vm in np.flatnonzero(env.vm_mask()):
        mask[vm] = env.placement_mask(int(vm))
    body = {"observation": {k: np.asarray(v).tolist() for k, v in obs.items()}, "mask": mask.tolist()}
    action = _post(client, "vm2rl", "act", body)["action"]
    assert action == [int(a) for a in predictors["vm2rl"].act(obs, mask)]
    assert mask[action[0], action[1]]

    snapshot = vmr2l_snapshot_json()
    plan = _post(client, "vm2rl", "act", {"snapshot": snapshot, "max_migrations": 5})
    expected = predictors["vm2rl"].plan(parse_vmr2l_snapshot(snapshot, source="test"), 5)
    assert len(plan["migrations"]) == len(expected.moves) <= 5
    assert plan["fragment_rate_after"] == pytest.approx(expected.fragment_rate)
    assert plan["fragment_rate_after"] <= plan["fragment_rate_before"]
    example = models["vm2rl"].operations["act"].example()
    assert _post(client, "vm2rl", "act", example)["migrations"] is not None


# --------------------------------------------------------------------------- refusals
def _error_fields(response: Any) -> list[str]:
    """The last element of each 422 error's location (the field it names)."""
    detail = response.json()["detail"]
    return [str(e["loc"][-1]) for e in detail] if isinstance(detail, list) else []


def test_a_missing_field_a_wrong_type_and_an_unknown_category_name_the_field(client: TestClient, models) -> None:
    event = _deoxys_events(models["deoxys"], 1)[0]
    columns = models["deoxys"].manifest["input_schema"]["columns"]
    numeric = next(c for c, s in columns.items() if s.get("dtype") != "category")
    category = next(c for c, s in columns.items() if s.get("dtype") == "category")

    missing = client.post(
        "/v1/models/deoxys/predict", json={"events": [{k: v for k, v in event.items() if k != numeric}]}
    )
    assert missing.status_code == 422 and numeric in _error_fields(missing)

    wrong_type = client.post("/v1/models/deoxys/predict", json={"events": [{**event, numeric: "fast"}]})
    assert wrong_type.status_code == 422 and numeric in _error_fields(wrong_type)

    unknown = client.post("/v1/models/deoxys/predict", json={"events": [{**event, category: "no-such-category"}]})
    assert unknown.status_code == 422 and category in _error_fields(unknown)
    assert columns[category]["categories"][0] in json.dumps(unknown.json())  # says what was expected

    extra = client.post("/v1/models/deoxys/predict", json={"events": [{**event, "surprise": 1}]})
    assert extra.status_code == 422 and "surprise" in _error_fields(extra)

    tool = client.post("/v1/models/continuum/predict", json={"tool_calls": [{"tool": 5}]})
    assert tool.status_code == 422 and "tool" in _error_fields(tool)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_by_name(client: TestClient, models, token: str) -> None:
    schema = models["cloudformer"].manifest["input_schema"]
    row = ", ".join(["1.0"] * (schema["n_metrics"] - 1) + [token])
    window = "[" + ", ".join([f"[{row}]"] * schema["window"]) + "]"
    response = _raw(client, "cloudformer", "predict", f'{{"windows": [{window}]}}'.encode())
    assert response.status_code == 422, response.text
    assert "finite" in response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"][:2] == ["body", "windows"] and detail[0]["input"] in ("nan", "inf", "-inf")

    calls = f'{{"tool_calls": [{{"tool": "bash", "reload_s": {token}}}]}}'.encode()
    ttl = _raw(client, "continuum", "ttl", calls)
    assert ttl.status_code == 422 and "reload_s" in _error_fields(ttl)


def test_arrays_of_the_wrong_shape_are_refused_with_the_expected_shape(client: TestClient, models) -> None:
    schema = models["cloudformer"].manifest["input_schema"]
    short = [[1.0] * schema["n_metrics"]] * (schema["window"] - 1)
    response = client.post("/v1/models/cloudformer/predict", json={"windows": [short]})
    assert response.status_code == 422 and f"the model takes {schema['window']}" in response.text
    narrow = [[1.0] * (schema["n_metrics"] + 1)] * schema["window"]
    response = client.post("/v1/models/cloudformer/predict", json={"windows": [narrow]})
    assert response.status_code == 422 and f"the model takes {schema['n_metrics']}" in response.text
    assert client.post("/v1/models/cloudformer/predict", json={"windows": []}).status_code == 422
    observation = {"vm": [[0.0] * 8], "pm": [[0.0] * 8], "vm_host": [0], "budget": [1.0, 0.5]}
    response = client.post("/v1/models/vm2rl/act", json={"observation": observation, "mask": [[True, False]]})
    assert response.status_code == 422 and "mask must be (1, 3)" in response.text


def test_an_oversized_body_gets_413(client: TestClient) -> None:
    body = b'{"tool_calls": [' + b'{"tool": "bash"},' * (MAX_BODY_BYTES // 16) + b'{"tool": "bash"}]}'
    assert len(body) > MAX_BODY_BYTES
    response = _raw(client, "continuum", "predict", body)
    assert response.status_code == 413 and f"limit of {MAX_BODY_BYTES} bytes" in response.json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_unknown_models_and_operations_get_404(client: TestClient) -> None:
    for response in (
        client.post("/v1/models/nope/predict", json={}),
        client.get("/v1/models/nope"),
    ):
        assert response.status_code == 404 and "unknown model 'nope'" in response.json()["detail"]
    response = client.post("/v1/models/deoxys/act", json={})
    assert response.status_code == 404 and "has no operation 'act'" in response.json()["detail"]


def test_model_endpoints_need_the_token_and_health_does_not(client: TestClient, anonymous: TestClient, models) -> None:
    wrong = {"Authorization": "Bearer " + "w" * len(TOKEN)}
    requests = [("GET", "/v1/models", None), *[("GET", f"/v1/models/{name}", None) for name in SERVED]]
    for name, model in models.items():
        for operation in model.operations.values():
            requests.append(("POST", f"/v1/models/{name}/{operation.name}", operation.example()))
    requests.append(("POST", "/v1/models/deoxys/no_such_operation", {}))
    for method, path, body in requests:
        for headers in ({}, wrong, {"Authorization": TOKEN}):
            response = anonymous.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
        # a body that is not even JSON: still 401, nothing about the schema is revealed
        if method == "POST":
            response = anonymous.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
            assert response.status_code == 401, (path, response.text)
        assert client.request(method, path, json=body).status_code in (200, 404)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert anonymous.get(path).status_code == 200


def _sample_counts(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    counts = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            counts[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return counts


def test_metrics_count_requests_errors_and_latency_per_model(client: TestClient, models) -> None:
    before = _sample_counts(client)
    example = models["continuum"].operations["ttl"].example()
    for _ in range(3):
        _post(client, "continuum", "ttl", example)
    for _ in range(2):
        assert client.post("/v1/models/continuum/ttl", json={"tool_calls": []}).status_code == 422
    _post(client, "cloudformer", "predict", models["cloudformer"].operations["predict"].example())
    after = _sample_counts(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    ttl = {"model": "continuum", "operation": "ttl"}
    assert delta("infragym_requests_total", status="200", **ttl) == 3
    assert delta("infragym_requests_total", status="422", **ttl) == 2
    assert delta("infragym_errors_total", **ttl) == 2
    assert delta("infragym_request_latency_seconds_count", **ttl) == 5
    assert delta("infragym_request_latency_seconds_sum", **ttl) > 0
    cloudformer = {"model": "cloudformer", "operation": "predict"}
    assert delta("infragym_requests_total", status="200", **cloudformer) == 1
    assert delta("infragym_errors_total", **cloudformer) == 0


def test_huge_finite_numbers_never_give_500(client: TestClient, models) -> None:
    """Values the schema allows but the models never saw: an answer or a 422, not a crash."""
    schema = models["cloudformer"].manifest["input_schema"]
    for value in (1e308, -1e308, 1e-308):
        windows = [[[value] * schema["n_metrics"]] * schema["window"]]
        assert client.post("/v1/models/cloudformer/predict", json={"windows": windows}).status_code in (200, 422)
        events = [
            {k: (value if isinstance(v, float) else v) for k, v in _deoxys_events(models["deoxys"], 1)[0].items()}
        ]
        assert client.post("/v1/models/deoxys/predict", json={"events": events}).status_code in (200, 422)
        calls = [{"tool": "bash", "prev_duration_s": abs(value), "reload_s": abs(value), "queue_delay_s": abs(value)}]
        assert client.post("/v1/models/continuum/ttl", json={"tool_calls": calls}).status_code in (200, 422)
        assert client.post(
            "/v1/models/continuum/predict", json={"tool_calls": [{"tool": "x", "turn": 10**18}]}
        ).status_code in (200, 422)
        observation = {"vm": [[value] * 8], "pm": [[value] * 8], "vm_host": [0], "budget": [value, value]}
        body = {"observation": observation, "mask": [[True, False, False]]}
        assert client.post("/v1/models/vm2rl/act", json=body).status_code in (200, 422)
    assert client.get("/healthz").status_code == 200


# --------------------------------------------------------------------------- fuzz
FUZZ_EXAMPLES = 1000

# Replacement values of the wrong kind for any leaf or branch (each of them is refused where a
# number, a category, a list or an object is expected ... or, rarely, accepted: see below).
WRONG_VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 10**400]),
    st.none(),
    st.booleans(),
    st.just([]),
    st.just({}),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in a JSON value (the root included), shallow lists sampled at their ends."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list) and value:
        for index in sorted({0, len(value) - 1}):
            found += _paths(value[index], (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


def _delete(value: Any, path: tuple[Any, ...]) -> Any:
    if len(path) == 1:
        copy = dict(value) if isinstance(value, dict) else list(value)
        del copy[path[0]]
        return copy
    return _replace(value, path[:1], _delete(value[path[0]], path[1:]))


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


@st.composite
def bad_bodies(draw: st.DrawFn, examples: dict[str, Any]) -> tuple[str, bytes]:
    """A target ``model/operation`` and a body made from its valid example by one mutation."""
    target = draw(st.sampled_from(sorted(examples)))
    example = examples[target]
    kind = draw(st.sampled_from(["replace", "delete", "extra_key", "nest", "unnest", "empty", "bytes"]))
    if kind == "bytes":
        raw = draw(st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"{", b"[1,", b'{"a":}', b"\xff\xfe"])))
        return target, raw
    path = draw(st.sampled_from(_paths(example)))
    node = _get(example, path)
    if kind == "replace":
        body = _replace(example, path, draw(WRONG_VALUES))
    elif kind == "delete" and path:
        body = _delete(example, path)
    elif kind == "extra_key" and isinstance(node, dict):
        body = _replace(example, path, {**node, draw(st.text(min_size=1, max_size=8)): draw(WRONG_VALUES)})
    elif kind == "nest":
        body = _replace(example, path, [node])
    elif kind == "unnest" and isinstance(node, list) and node:
        body = _replace(example, path, node[0])
    else:  # "empty", or a mutation that does not apply here
        body = _replace(example, path, [] if isinstance(node, list) else {})
    return target, json.dumps(body, allow_nan=True).encode()


def _schema_accepts(model: ServedModel, operation: str, raw: bytes) -> bool:
    """Whether the request model accepts the body (parsed the way the service parses it)."""
    try:
        model.operations[operation].request.model_validate_json(raw)
    except Exception:
        return False
    return True


def _vm2rl_observation_body() -> dict[str, Any]:
    """A valid observation-form body of VM2RL's ``act`` (a tiny generated cluster)."""
    from infragym.envs.cluster import VMRescheduleEnv

    env = VMRescheduleEnv(preset="tiny", max_migrations=2)
    obs, _ = env.reset(seed=0)
    mask = np.zeros((len(obs["vm"]), len(obs["pm"]) * 3), dtype=bool)
    for vm in np.flatnonzero(env.vm_mask()):
        mask[vm] = env.placement_mask(int(vm))
    return {"observation": {k: np.asarray(v).tolist() for k, v in obs.items()}, "mask": mask.tolist()}


@pytest.mark.parametrize("model_name", SERVED)
def test_fuzzed_bad_requests_get_4xx_with_a_message_and_the_service_stays_healthy(
    client: TestClient, models: dict[str, ServedModel], model_name: str
) -> None:
    """``FUZZ_EXAMPLES`` bad requests in all, shared evenly by the served models' operations."""
    model = models[model_name]
    examples = {f"{model_name}/{op.name}": op.example() for op in model.operations.values()}
    if model_name == "vm2rl":  # both forms of act: a snapshot (the example) and an observation
        examples["vm2rl/act#observation"] = _vm2rl_observation_body()
    answered: dict[int, int] = {}

    @settings(
        max_examples=FUZZ_EXAMPLES // len(SERVED),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
    )
    @given(bad_bodies(examples))
    def check(case: tuple[str, bytes]) -> None:
        target, raw = case
        operation = target.split("/")[1].partition("#")[0]
        accepted = _schema_accepts(model, operation, raw)
        response = _raw(client, model_name, operation, raw)
        # a mutation the schema happens to accept (a wrong value that is still a valid one) must
        # not crash the service either, but it is not one of the bad requests counted
        assert response.status_code < 500, (target, raw[:300], response.text[:500])
        assume(not accepted)
        assert 400 <= response.status_code < 500, (target, raw[:300], response.status_code)
        assert response.json()["detail"], (target, raw[:300])
        answered[response.status_code] = answered.get(response.status_code, 0) + 1

    check()
    # hypothesis stops early only if it runs out of distinct cases
    assert sum(answered.values()) >= 0.9 * FUZZ_EXAMPLES // len(SERVED), answered
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_start_up_answers_every_operations_example_and_refuses_one_that_fails(models: dict[str, ServedModel]) -> None:
    from pydantic import BaseModel

    from infragym.serve.operations import Operation
    from infragym.serve.server import ServeError, warm_up

    app = create_app(list(models.values()))
    warm_up(app)  # the real operations answer their own examples
    assert set(app.state.examples) == set(app.state.answers)

    class Body(BaseModel):
        x: int

    def refuse(body: Body) -> Body:
        raise ValueError("x must be even")

    broken = ServedModel(
        "broken",
        "toy",
        "nowhere",
        {},
        None,
        {"predict": Operation("predict", "-", Body, Body, refuse, lambda: {"x": 1})},
    )
    with pytest.raises(ServeError, match=r"broken/predict refused its own example request at start-up \(422: .*even"):
        warm_up(create_app([broken]))
