"""course-service: the seed's Course Service — the slow database query (the bottleneck) and a
cache lookup; plus an N+1 path, an error path, a recommendation call, and a schedule page with
the patterns of production traces (a pool of 3 connections, a retry after a timeout, a lock
wait told by a span event). Logs in JSON."""

from __future__ import annotations

import asyncio

from aiohttp import web
from opentelemetry.trace import SpanKind, Status, StatusCode

from demo.services.telemetry import Telemetry, serve

t = Telemetry("course-service", "json")
routes = web.RouteTableDef()
COURSES = [{"id": i, "title": f"Course {i}"} for i in range(1, 6)]


@routes.get("/courses")
async def courses(_request: web.Request) -> web.Response:
    t.log("info", "listing courses")
    await t.db("SELECT * FROM courses WHERE active = true", 0.080).run()  # ← Bottleneck!
    t.log("warn", "slow query", duration_ms=80)
    with t.tracer.start_as_current_span("cache lookup", kind=SpanKind.INTERNAL, attributes={"cache.hit": True}):
        await asyncio.sleep(0.005)
        t.log("info", "cache hit")
    return web.json_response(COURSES)


@routes.get("/courses/{course_id}/lessons")
async def lessons(request: web.Request) -> web.Response:
    course_id = int(request.match_info["course_id"])
    t.log("info", "listing lessons one by one", course_id=course_id)
    for position in range(12):  # N+1: one query per lesson instead of one for all
        await t.db(f"SELECT * FROM lessons WHERE course_id = {course_id} AND position = {position}", 0.005).run()
    return web.json_response([{"course": course_id, "position": p} for p in range(12)])


@routes.post("/enroll")
async def enroll(_request: web.Request) -> web.Response:
    await t.db("INSERT INTO enrollments (user_id, course_id) VALUES (42, 7)", 0.020).run()
    raise RuntimeError("enrollment failed: seat limit reached")


@routes.get("/recommendations")
async def recommendations(_request: web.Request) -> web.Response:
    await t.db("SELECT * FROM recommendations WHERE user_id = 42", 0.040).run()
    t.log("info", "recommendations ready")
    return web.json_response(COURSES[:2])


SECTION_SECONDS = (0.040, 0.060, 0.038, 0.072, 0.050, 0.045, 0.066, 0.041, 0.055, 0.039)


@routes.get("/courses/{course_id}/schedule")
async def schedule(request: web.Request) -> web.Response:
    """Seats per section through a pool of 3 connections, a cache read retried after a timeout,
    and a view counter that waits for a row lock (the wait written as span events)."""
    course_id = int(request.match_info["course_id"])
    pool = asyncio.Semaphore(3)  # the connection pool: 10 queries, at most 3 at a time

    async def seats(section: int) -> None:
        async with pool:
            await t.db(f"SELECT seats FROM sections WHERE course_id = {course_id} AND section = {section}",
                       SECTION_SECONDS[section]).run()

    await asyncio.gather(*(seats(section) for section in range(len(SECTION_SECONDS))))
    for attempt in (1, 2):  # the first read times out; the same key is read again
        with t.tracer.start_as_current_span("cache get", kind=SpanKind.CLIENT, attributes={
                "db.system": "redis", "server.address": "cache", "cache.key": f"schedule:{course_id}"}) as span:
            if attempt == 1:
                await asyncio.sleep(0.050)
                span.record_exception(TimeoutError("cache timeout after 50ms"))
                span.set_status(Status(StatusCode.ERROR, "An error occurred"))
                t.log("warn", "Retrying cache get after timeout", key=f"schedule:{course_id}")
                continue
            await asyncio.sleep(0.003)
    statement = f"UPDATE course_views SET n = n + 1 WHERE course_id = {course_id}"
    with t.tracer.start_as_current_span("UPDATE course_views", kind=SpanKind.CLIENT, attributes={
            "db.system": "postgresql", "db.statement": statement}) as span:
        span.add_event("Waiting for lock behind 3 transactions", {"lock.table": "course_views"})
        await asyncio.sleep(0.150)
        span.add_event("Acquired lock with 0 transactions waiting behind")
    t.log("info", "schedule ready", course_id=course_id)
    return web.json_response({"course": course_id, "sections": len(SECTION_SECONDS)})


app = t.app()
app.add_routes(routes)

if __name__ == "__main__":
    serve(app, 8002)
