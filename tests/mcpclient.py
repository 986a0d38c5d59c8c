"""The MCP SDK's own client over streamable HTTP, pointed at a test service's /mcp."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

TOKEN = "s3cret-mcp-token"


@asynccontextmanager
async def http_client(service: Any, token: str | None = TOKEN) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http, \
            Client(streamable_http_client(str(service.make_url("/mcp")), http_client=http)) as client:
        yield client


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content)
