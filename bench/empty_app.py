"""The relay's server stack with an empty handler: the ceiling `run_all.py` divides by.

    .venv/bin/python bench/empty_app.py PORT

A FastAPI app with one route, `POST /webhooks/dbt`, that reads the body and
answers 202 with a small JSON body, recording nothing and checking no
signature; `GET /healthz` answers 200. It runs under `uvicorn.run` with the
keyword arguments `service.serve` gives the relay (one process, the default
event loop and HTTP parser, no access log, the same concurrency limit and
keep-alive), so the ratio of the relay's events per second to this app's is
the share of the stack's capacity left after verifying, parsing and durably
recording each event.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/webhooks/dbt")
async def webhook(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"outcome": "accepted"}, status_code=202)


@app.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_config=None,
        access_log=False,
        limit_concurrency=256,  # as service.serve: Settings.limit_concurrency's default
        timeout_keep_alive=5,
        timeout_graceful_shutdown=30,
    )
