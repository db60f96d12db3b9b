"""Documentation jobs through the API, Temporal and both workers, with providers that are real
HTTP servers speaking OpenAI's protocol (stubs a test can make fail, stall, answer 429 or
answer garbage). The edits must apply, the result must parse, the code must be unchanged."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path
from typing import Any

import pytest

from services.docs.assembly import apply_edits
from services.docs.schemas import Edit
from tests.fixtures.docs import DocsApi, DocsStack, StubProviders

DATA = Path(__file__).parents[1] / "data" / "docs"
PYTHON = (DATA / "inventory.py").read_text()
TYPESCRIPT = (DATA / "cart.ts").read_text()


def edits_of(job: dict[str, Any]) -> list[Edit]:
    return [Edit.model_validate(edit) for edit in job["result"]["edits"]]


def assert_applies(job: dict[str, Any], content: str) -> str:
    assert job["status"] == "completed", job
    result = job["result"]
    patched = apply_edits(content, edits_of(job))
    assert patched == result["patched_content"]
    assert result["diff"].startswith("---") == bool(result["edits"])
    return patched


def test_function_doc_on_python(stub_docs: DocsApi, stub_providers: StubProviders) -> None:
    stub_providers.local.behave(text="Computes the stock's value.")

    job = stub_docs.run("function_doc", "app/inventory.py", PYTHON)

    patched = assert_applies(job, PYTHON)
    tree = ast.parse(patched)
    documented = {
        node.name: ast.get_docstring(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    assert documented["parse_line"] is not None
    assert "Computes the stock's value." in documented["parse_line"]
    assert (documented["low_stock"] or "").startswith("Items whose quantity")  # kept as it was
    result = job["result"]
    assert result["provider"] == "local"
    assert result["model"] == "local"
    assert result["tokens_in"] > 0
    assert result["tokens_out"] > 0
    assert result["duration_ms"] > 0
    assert result["summary"]
    assert job["language"] == "python"


def test_every_job_type_on_typescript(stub_docs: DocsApi, stub_providers: StubProviders) -> None:
    stub_providers.local.behave(text="Adds the item to the cart.")
    for job_type in ("function_doc", "inline_comment", "file_summary", "full_file_pass"):
        job = stub_docs.run(job_type, "src/cart.ts", TYPESCRIPT)
        patched = assert_applies(job, TYPESCRIPT)
        assert patched != TYPESCRIPT or job_type == "inline_comment", job_type
    stub_providers.local.behave(text="existingItem")
    renamed = stub_docs.run("variable_rename", "src/cart.ts", TYPESCRIPT)
    assert renamed["status"] == "completed", renamed
    assert renamed["result"]["edits"] == []
    assert renamed["result"]["patched_content"] == TYPESCRIPT
    olds = {suggestion["old"] for suggestion in renamed["result"]["suggestions"]}
    assert olds & {"e", "tmp"}


def test_rename_suggestions_on_python_are_scope_aware(
    stub_docs: DocsApi, stub_providers: StubProviders
) -> None:
    stub_providers.local.behave(text="subtotal - the sum before tax")

    job = stub_docs.run("variable_rename", "app/inventory.py", PYTHON)

    assert job["status"] == "completed", job
    suggestions = {item["old"]: item for item in job["result"]["suggestions"]}
    tmp = suggestions["tmp"]
    assert tmp["new"] == "subtotal"
    lines = PYTHON.splitlines()
    for occurrence in tmp["occurrences"]:
        start, end = occurrence["start"], occurrence["end"]
        assert start["line"] == end["line"]
        assert lines[start["line"]][start["column"] : end["column"]] == "tmp"
    assert len(tmp["occurrences"]) == 2  # bound once, used once


def test_local_failing_the_primary_documents_the_file(
    stub_docs: DocsApi, stub_providers: StubProviders
) -> None:
    # Up (its /health answers, so the gpu_tasks worker polls) but failing every call. A local
    # server that does not answer at all is not failed over: the call waits for it in gpu_tasks
    # (tests/integration/test_docs_wait_for_model.py).
    stub_providers.local.behave("error", status=503)
    stub_providers.primary.behave(text="Parses one line of the stock file.")

    job = stub_docs.run("function_doc", "app/inventory.py", PYTHON)

    assert_applies(job, PYTHON)
    assert job["result"]["provider"] == "openai"
    assert stub_providers.primary.requests[0]["headers"]["authorization"] == (
        "Bearer sk-primary-test"
    )


def test_primary_failing_the_secondary_answers(
    stub_docs: DocsApi, stub_providers: StubProviders
) -> None:
    stub_providers.local.behave("error", status=503)
    stub_providers.primary.behave("rate_limit", retry_after="60")

    job = stub_docs.run("file_summary", "src/cart.ts", TYPESCRIPT)

    assert_applies(job, TYPESCRIPT)
    assert job["result"]["provider"] == "openai-secondary"


def test_garbage_is_retried_once_with_a_stricter_prompt_then_reported(
    stub_docs: DocsApi, stub_providers: StubProviders
) -> None:
    for stub in (stub_providers.local, stub_providers.primary, stub_providers.secondary):
        stub.behave(text=" ... ``` !!! ")

    job = stub_docs.run("file_summary", "app/inventory.py", PYTHON)

    assert job["status"] == "failed", job
    error = job["error"]
    assert error["code"] == "AI_ERROR"
    assert "stricter prompt" in error["message"]
    assert "unusable answer" in error["message"]
    # One file summary: asked once, then once more with the stricter prompt, of each provider.
    assert len(stub_providers.local.requests) == 2
    first, second = (request["body"]["messages"] for request in stub_providers.local.requests)
    assert first != second
    assert job["result"] is None


def test_all_providers_down_is_an_ai_error_naming_each(
    stub_docs: DocsApi, stub_providers: StubProviders
) -> None:
    stub_providers.local.behave("error", status=503)  # up (see above), failing
    stub_providers.primary.behave("error", status=500)
    stub_providers.secondary.behave("error", status=502)

    job = stub_docs.run("file_summary", "app/inventory.py", PYTHON)

    assert job["status"] == "failed", job
    error = job["error"]
    assert error["code"] == "AI_ERROR"
    providers = [entry["provider"] for entry in error["details"]["providers"]]
    assert providers[-2:] == ["openai", "openai-secondary"]
    assert "HTTP 500" in error["message"]
    assert "HTTP 502" in error["message"]


def test_failed_job_notifies_and_is_recorded(
    stub_docs: DocsApi, stub_providers: StubProviders
) -> None:
    for stub in (stub_providers.local, stub_providers.primary, stub_providers.secondary):
        stub.behave(text="")
    job = stub_docs.run("file_summary", "app/inventory.py", PYTHON)
    assert job["status"] == "failed"
    notification = stub_docs.notification("docs.failed", job["job_id"])
    assert notification["payload"]["error"]["code"] == "AI_ERROR"


def test_completed_job_notifies(stub_docs: DocsApi) -> None:
    job = stub_docs.run("file_summary", "app/inventory.py", PYTHON)
    assert job["status"] == "completed"
    notification = stub_docs.notification("docs.completed", job["job_id"])
    assert notification["payload"]["summary"] == job["result"]["summary"]


def test_identical_requests_share_a_job_and_lists_are_paginated(stub_docs: DocsApi) -> None:
    project_id = stub_docs.create_project()
    first = stub_docs.submit(project_id, "file_summary", "app/inventory.py", PYTHON)
    again = stub_docs.submit(project_id, "file_summary", "app/inventory.py", PYTHON)
    other = stub_docs.submit(project_id, "function_doc", "app/inventory.py", PYTHON)
    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    assert other.json()["job_id"] != first.json()["job_id"]
    assert first.json()["status_url"].endswith(f"/api/v1/docs/jobs/{first.json()['job_id']}")
    for job_id in (first.json()["job_id"], other.json()["job_id"]):
        stub_docs.wait_for(job_id)

    page = stub_docs.client.get(
        f"/api/v1/docs/jobs?project_id={project_id}&limit=1", headers=stub_docs.headers
    ).json()
    assert page["total"] == 2
    assert [item["job_id"] for item in page["items"]] == [other.json()["job_id"]]
    assert page["items"][0]["result"] is None  # lists stay light


def test_an_identical_request_reuses_a_completed_job_and_reruns_a_failed_one(
    stub_docs: DocsApi, stub_providers: StubProviders
) -> None:
    """The job rules that builds share (services/jobs/lifecycle.py)."""
    for stub in (stub_providers.local, stub_providers.primary, stub_providers.secondary):
        stub.behave(text="")
    project_id = stub_docs.create_project()
    first = stub_docs.submit(project_id, "file_summary", "app/inventory.py", PYTHON).json()
    failed = stub_docs.wait_for(first["job_id"])
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "AI_ERROR"

    stub_providers.local.behave("answer")
    again = stub_docs.submit(project_id, "file_summary", "app/inventory.py", PYTHON)
    assert again.status_code == 202
    assert again.json()["job_id"] == first["job_id"]
    assert again.json()["status"] == "queued"  # run anew, its last error forgotten
    completed = stub_docs.wait_for(first["job_id"])
    assert completed["status"] == "completed", completed
    assert completed["error"] is None
    calls = len(stub_providers.local.requests)

    reused = stub_docs.submit(project_id, "file_summary", "app/inventory.py", PYTHON)
    assert reused.json() == {**again.json(), "status": "completed"}
    completed.pop("seen")  # what polling saw, not part of the job
    assert stub_docs.job(first["job_id"]).json() == completed  # not run again
    assert len(stub_providers.local.requests) == calls


def test_cancel_a_running_job(stub_docs: DocsApi, stub_providers: StubProviders) -> None:
    for stub in (stub_providers.local, stub_providers.primary, stub_providers.secondary):
        stub.behave("stall", stall_s=30)
    project_id = stub_docs.create_project()
    job_id = stub_docs.submit(project_id, "file_summary", "app/inventory.py", PYTHON).json()[
        "job_id"
    ]
    stub_docs.wait_for(job_id, ("running",))

    cancelled = stub_docs.client.delete(f"/api/v1/docs/jobs/{job_id}", headers=stub_docs.headers)

    assert cancelled.status_code == 202, cancelled.text
    assert stub_docs.wait_for(job_id)["status"] == "cancelled"
    again = stub_docs.client.delete(f"/api/v1/docs/jobs/{job_id}", headers=stub_docs.headers)
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("file_path", "content", "language", "status", "field"),
    [
        ("notes.rb", "puts 1\n", None, 422, "language"),
        ("a.py", "x = 1\n", "cobol", 422, "language"),
        ("a.py", "def broken(:\n    pass\n", None, 422, "content"),
        ("a.ts", "function (\n", None, 422, "content"),
        ("a.py", "x = 1\n\x00\x01\x02binary", None, 422, "content"),
        ("a.py", "x = 1\n" + "#" * (1024 * 1024), None, 413, None),
    ],
    ids=["unknown-extension", "unknown-language", "python-syntax", "ts-syntax", "binary", "big"],
)
def test_bad_input_is_refused_clearly(
    stub_docs: DocsApi,
    file_path: str,
    content: str,
    language: str | None,
    status: int,
    field: str | None,
) -> None:
    response = stub_docs.submit(
        stub_docs.create_project(), "file_summary", file_path, content, language
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if field is not None:
        assert error["code"] == "VALIDATION_ERROR"
        assert [item["field"] for item in error["details"]["fields"]] == [field]
    else:
        assert error["code"] == "PAYLOAD_TOO_LARGE"


def test_unknown_job_type_is_a_validation_error(stub_docs: DocsApi) -> None:
    response = stub_docs.submit(stub_docs.create_project(), "poetry", "a.py", "x = 1\n")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_another_users_project_and_jobs_are_not_found(
    stub_docs: DocsApi, stub_docs_stack: DocsStack
) -> None:
    other = stub_docs_stack.api()
    project_id = stub_docs.create_project()
    job_id = stub_docs.submit(project_id, "file_summary", "app/inventory.py", PYTHON).json()[
        "job_id"
    ]
    stub_docs.wait_for(job_id)
    requests: list[tuple[str, str, dict[str, Any]]] = [
        (
            "POST",
            "/api/v1/docs/jobs",
            {
                "json": {
                    "project_id": project_id,
                    "job_type": "file_summary",
                    "file_path": "a.py",
                    "content": "x = 1\n",
                }
            },
        ),
        ("GET", f"/api/v1/docs/jobs/{job_id}", {}),
        ("DELETE", f"/api/v1/docs/jobs/{job_id}", {}),
        ("GET", f"/api/v1/docs/jobs?project_id={project_id}", {}),
    ]
    for method, url, extra in requests:
        response = other.client.request(method, url, headers=other.headers, **extra)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"]["code"] == "NOT_FOUND"
        anonymous = other.client.request(method, url, **extra)
        assert anonymous.status_code == 401
    missing = stub_docs.job(str(uuid.uuid4()))
    assert missing.status_code == 404
    assert stub_docs.job(job_id).json()["status"] == "completed"
