"""The service's Python client against a real server (uvicorn on a loopback port, in a thread)
serving the session's small Deoxys export (``conftest.served_exports``): the values are the
loaded predictor's own, and refusals carry the service's status and detail."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e '.[serve]')")

import uvicorn

from infragym.serve import ServedModel, create_app, load_models
from infragym.serve.client import Client, ServiceError, describe_detail

TOKEN = "client-test-token-0123456789"


@pytest.fixture(scope="module")
def deoxys_run(served_exports: dict[str, Path]) -> Path:
    """The run folder of the session's small Deoxys export (shared with the service's tests)."""
    return served_exports["deoxys"].parent


@pytest.fixture(scope="module")
def served(deoxys_run: Path) -> Iterator[tuple[str, ServedModel]]:
    """A served Deoxys model behind a bearer token: the base URL and the loaded model."""
    models = load_models([f"deoxys={deoxys_run / 'export'}"])  # signed by this session's key: no --trust
    app = create_app(models, token=TOKEN)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", models[0]
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def client(served: tuple[str, ServedModel]) -> Iterator[Client]:
    with Client(served[0], token=TOKEN) as c:
        yield c


@pytest.fixture(scope="module")
def logged_events(deoxys_run: Path, served: tuple[str, ServedModel]) -> list[dict[str, Any]]:
    """Events of the run's own log, as JSON objects of the export's input columns."""
    columns = served[1].manifest["input_schema"]["columns"]
    log = pd.read_parquet(deoxys_run / "data" / "health_log.parquet").head(40)
    return [
        {c: str(row[c]) if spec.get("dtype") == "category" else float(row[c]) for c, spec in columns.items()}
        for _, row in log.iterrows()
    ]


def test_probes_and_model_listing(client: Client, served: tuple[str, ServedModel]) -> None:
    _, model = served
    assert client.health() and client.ready()
    [summary] = client.models()
    assert summary["name"] == "deoxys" and summary["component"] == "deoxys"
    assert summary["operations"] == ["predict"]
    assert summary["metrics"] == model.manifest["metrics"]
    described = client.describe("deoxys")
    assert described["input_schema"] == model.manifest["input_schema"]
    assert "predict" in described["requests"]
    assert "infragym_requests" in client.metrics()


def test_predict_equals_the_loaded_predictor(
    client: Client, served: tuple[str, ServedModel], logged_events: list[dict[str, Any]]
) -> None:
    _, model = served
    batch = logged_events
    answer = client.predict("deoxys", events=batch)
    assert answer == client.call("deoxys", "predict", {"events": batch})
    expected = model.predictor.predict(pd.DataFrame(batch))
    got = pd.DataFrame(answer["decisions"])
    assert len(got) == len(batch)
    for column in ("action", "model_action", "legacy_action"):
        assert got[column].tolist() == expected[column].astype(str).tolist(), column
    for column in [c for c in got.columns if c.startswith(("effect_", "objective_"))]:
        # JSON round-trips a float exactly
        assert got[column].tolist() == expected[column].astype(float).tolist(), column
    assert got["fallback"].tolist() == expected["fallback"].astype(bool).tolist()
    # the request's override of the export's fallback setting reaches the predictor
    unguarded = client.predict("deoxys", events=batch, fallback=False)["decisions"]
    assert [d["action"] for d in unguarded] == model.predictor.predict(pd.DataFrame(batch), fallback=False)[
        "action"
    ].astype(str).tolist()
    assert not any(d["fallback"] for d in unguarded)


def test_the_example_body_is_served(client: Client, served: tuple[str, ServedModel]) -> None:
    _, model = served
    body = model.operations["predict"].example()
    assert len(client.predict("deoxys", body)["decisions"]) == len(body["events"])


def test_a_refused_field_is_named_with_status_and_detail(
    client: Client, served: tuple[str, ServedModel], logged_events: list[dict[str, Any]]
) -> None:
    _, model = served
    event = dict(logged_events[0])
    category = next(c for c, s in model.manifest["input_schema"]["columns"].items() if s.get("dtype") == "category")
    event[category] = "no-such-category"
    with pytest.raises(ServiceError) as refused:
        client.predict("deoxys", events=[event])
    err = refused.value
    assert err.status_code == 422
    assert isinstance(err.detail, list) and err.detail[0]["loc"][-1] == category
    assert f"events.0.{category}" in str(err) and "422 Unprocessable" in str(err)


def test_a_missing_field_and_an_unknown_model(
    client: Client, served: tuple[str, ServedModel], logged_events: list[dict[str, Any]]
) -> None:
    _, model = served
    event = dict(logged_events[0])
    numeric = next(c for c, s in model.manifest["input_schema"]["columns"].items() if s.get("dtype") != "category")
    del event[numeric]
    with pytest.raises(ServiceError, match=f"events.0.{numeric}: Field required"):
        client.predict("deoxys", events=[event])
    with pytest.raises(ServiceError) as unknown:
        client.predict("no-such-model", events=[event])
    assert unknown.value.status_code == 404 and "unknown model 'no-such-model'" in unknown.value.detail
    with pytest.raises(ServiceError) as no_operation:
        client.act("deoxys", {})
    assert no_operation.value.status_code == 404 and "no operation 'act'" in no_operation.value.detail


def test_a_wrong_or_missing_token_gets_401_and_probes_stay_open(
    served: tuple[str, ServedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, _ = served
    monkeypatch.delenv("INFRAGYM_SERVE_TOKEN", raising=False)
    for token in (None, "wrong-token-0123456789"):
        with Client(base_url, token=token) as stranger:
            assert stranger.health() and stranger.ready()
            with pytest.raises(ServiceError) as refused:
                stranger.models()
            assert refused.value.status_code == 401 and "bearer token" in refused.value.detail
    monkeypatch.setenv("INFRAGYM_SERVE_TOKEN", TOKEN)  # the service's own variable is read too
    with Client(base_url) as from_environment:
        assert from_environment.models()[0]["name"] == "deoxys"


def test_describe_detail_formats_validation_errors() -> None:
    errors = [{"loc": ["body", "events", 0, "age"], "msg": "Input should be finite", "type": "finite_number"}]
    assert describe_detail(errors) == "body.events.0.age: Input should be finite"
    assert describe_detail("unknown model 'x'") == "unknown model 'x'"
