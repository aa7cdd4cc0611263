"""The mock upstream's batch APIs: OpenAI Files + Batch and Anthropic Message Batches.

A batch runs `batch_s` seconds after it is created, each request answered by the mock's own
request API (so models misbehave as they do there); one cancelled before then ends with every
request canceled. `app[BATCHES]` maps each batch id to its record, for tests to inspect.
Imported by `mock_upstream_app` only (aiohttp is the gateway extra's).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import ClientSession, web

#: the app key of the batches the mock was sent
BATCHES = web.AppKey("batches", dict)
_NOT_FOUND = {"error": {"message": "No such object.", "type": "invalid_request_error", "param": None, "code": None}}


def add_batch_routes(app: Any, batch_s: float) -> None:
    """Add the batch routes to the mock's `aiohttp.web.Application`."""
    files: dict[str, bytes] = {}
    batches: dict[str, dict[str, Any]] = {}
    app[BATCHES] = batches
    tasks: set[asyncio.Task[None]] = set()

    async def run(b: dict[str, Any], origin: str) -> None:
        await asyncio.sleep(batch_s)
        out: list[dict[str, Any]] = []
        async with ClientSession() as session:
            for custom_id, path, body in b["requests"]:
                if b["cancel"]:
                    out.append({"custom_id": custom_id, "status": None, "body": None})
                    continue
                async with session.post(origin + path, json=body) as r:
                    out.append({"custom_id": custom_id, "status": r.status, "body": await r.json(content_type=None)})
        b["results"] = out
        b["status"] = "cancelled" if b["cancel"] else "completed"
        b["ended_at"] = int(time.time())

    def start(b: dict[str, Any], request: web.Request) -> None:
        batches[b["id"]] = b
        task = asyncio.get_running_loop().create_task(run(b, f"http://{request.host}"))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # ------------------------------------------------------------ OpenAI

    async def create_file(request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        content = upload.file.read() if isinstance(upload, web.FileField) else str(upload or "").encode()
        fid = f"file-mock{len(files) + 1}"
        files[fid] = content
        return web.json_response({"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                                  "filename": "batch.jsonl", "purpose": str(form.get("purpose"))})

    def openai_obj(b: dict[str, Any]) -> dict[str, Any]:
        ended = b["status"] in ("completed", "cancelled")
        res = b.get("results") or []
        ok = sum(1 for r in res if r["status"] == 200)
        return {"id": b["id"], "object": "batch", "endpoint": b["endpoint"], "status": b["status"], "input_file_id": b["input_file_id"],
                "output_file_id": f"file-out-{b['id']}" if ended else None, "error_file_id": f"file-err-{b['id']}" if ended else None,
                "created_at": b["created_at"], "completion_window": "24h",
                "request_counts": {"total": len(b["requests"]), "completed": ok, "failed": len(res) - ok}}

    async def create_batch(request: web.Request) -> web.Response:
        body = await request.json()
        content = files.get(str(body.get("input_file_id")))
        if content is None:
            return web.json_response(_NOT_FOUND, status=404)
        reqs = [(x["custom_id"], x["url"], x["body"]) for x in map(json.loads, content.splitlines()) if x]
        b = {"id": f"batch_mock{len(batches) + 1}", "api": "openai", "endpoint": body.get("endpoint"), "status": "in_progress",
             "input_file_id": body["input_file_id"], "created_at": int(time.time()), "requests": reqs, "cancel": False}
        start(b, request)
        return web.json_response(openai_obj(b))

    def openai_batch(request: web.Request) -> dict[str, Any] | None:
        b = batches.get(request.match_info["bid"])
        return b if b is not None and b["api"] == "openai" else None

    async def get_batch(request: web.Request) -> web.Response:
        b = openai_batch(request)
        return web.json_response(_NOT_FOUND, status=404) if b is None else web.json_response(openai_obj(b))

    async def cancel_batch(request: web.Request) -> web.Response:
        b = openai_batch(request)
        if b is None:
            return web.json_response(_NOT_FOUND, status=404)
        if b["status"] == "in_progress":
            b["cancel"], b["status"] = True, "cancelling"
        return web.json_response(openai_obj(b))

    async def file_content(request: web.Request) -> web.Response:
        fid = request.match_info["fid"]
        if fid in files:
            return web.Response(body=files[fid], content_type="application/jsonl")
        kind, _, bid = fid.removeprefix("file-").partition("-")
        b = batches.get(bid)
        if b is None or "results" not in b:
            return web.json_response(_NOT_FOUND, status=404)
        lines = []
        for r in b["results"]:
            ok = r["status"] == 200
            if (kind == "out") != ok:
                continue
            if r["status"] is None:
                line = {"id": f"req_{r['custom_id']}", "custom_id": r["custom_id"], "response": None,
                        "error": {"code": "batch_cancelled", "message": "cancelled"}}
            else:
                line = {"id": f"req_{r['custom_id']}", "custom_id": r["custom_id"], "error": None,
                        "response": {"status_code": r["status"], "request_id": "req_mock", "body": r["body"]}}
            lines.append(json.dumps(line))
        return web.Response(body="\n".join(lines).encode(), content_type="application/jsonl")

    # ------------------------------------------------------------ Anthropic

    def anthropic_obj(b: dict[str, Any], request: web.Request) -> dict[str, Any]:
        ended = b["status"] in ("completed", "cancelled")
        return {"id": b["id"], "type": "message_batch", "processing_status": "ended" if ended else "canceling" if b["cancel"] else "in_progress",
                "request_counts": {"processing": 0 if ended else len(b["requests"]), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
                "results_url": f"http://{request.host}/v1/messages/batches/{b['id']}/results" if ended else None}

    async def create_message_batch(request: web.Request) -> web.Response:
        body = await request.json()
        reqs = [(x["custom_id"], "/v1/messages", x["params"]) for x in body.get("requests") or []]
        b = {"id": f"msgbatch_mock{len(batches) + 1}", "api": "anthropic", "status": "in_progress", "created_at": int(time.time()),
             "requests": reqs, "cancel": False}
        start(b, request)
        return web.json_response(anthropic_obj(b, request))

    def message_batch(request: web.Request) -> dict[str, Any] | None:
        b = batches.get(request.match_info["bid"])
        return b if b is not None and b["api"] == "anthropic" else None

    async def get_message_batch(request: web.Request) -> web.Response:
        b = message_batch(request)
        return web.json_response(_NOT_FOUND, status=404) if b is None else web.json_response(anthropic_obj(b, request))

    async def cancel_message_batch(request: web.Request) -> web.Response:
        b = message_batch(request)
        if b is None:
            return web.json_response(_NOT_FOUND, status=404)
        if b["status"] == "in_progress":
            b["cancel"] = True
        return web.json_response(anthropic_obj(b, request))

    async def message_batch_results(request: web.Request) -> web.Response:
        b = message_batch(request)
        if b is None or "results" not in b:
            return web.json_response(_NOT_FOUND, status=404)
        lines = []
        for r in b["results"]:
            if r["status"] is None:
                result: dict[str, Any] = {"type": "canceled"}
            elif r["status"] == 200:
                result = {"type": "succeeded", "message": r["body"]}
            else:
                result = {"type": "errored", "error": {"type": "error", "error": {"type": "api_error", "message": str(r["body"])[:200]}}}
            lines.append(json.dumps({"custom_id": r["custom_id"], "result": result}))
        return web.Response(body="\n".join(lines).encode(), content_type="application/binary")

    app.router.add_post("/v1/files", create_file)
    app.router.add_get("/v1/files/{fid}/content", file_content)
    app.router.add_post("/v1/batches", create_batch)
    app.router.add_get("/v1/batches/{bid}", get_batch)
    app.router.add_post("/v1/batches/{bid}/cancel", cancel_batch)
    app.router.add_post("/v1/messages/batches", create_message_batch)
    app.router.add_get("/v1/messages/batches/{bid}", get_message_batch)
    app.router.add_get("/v1/messages/batches/{bid}/results", message_batch_results)
    app.router.add_post("/v1/messages/batches/{bid}/cancel", cancel_message_batch)
