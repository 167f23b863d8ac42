"""FastAPI anchors answering GET /health like trio-router's petstore: a sync handler (run in
Starlette's threadpool) and an async one.

    uvicorn stress.anchors.fastapi_app:app --port 8001
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/health-async")
async def health_async() -> dict[str, str]:
    return {"status": "ok"}
